//! The audit trail (R-AUD-1..5) and self-claimed relationships (R-LR-4).
//!
//! Append-only and tamper-evident: every row's `hash` is SHA-256 over the previous row's hash,
//! its own sequence number and its AuditEvent JSON, so changing, removing or inserting a row
//! breaks the chain at that row, and [`verify_chain`] names it. Rows are appended by one writer
//! at a time (in process: [`GroupCommit`]; across processes on PostgreSQL: a table lock) so the
//! chain never forks, and [`Store::append_audit`] commits before it returns: the caller sends
//! no data until its audit is durable (R-AUD-2).
//!
//! Group commit: a durable commit costs a flush (`synchronous = FULL` on SQLite, WAL flush on
//! PostgreSQL), a millisecond or more. Requests that want to append while another append is
//! being committed queue up; the next one to find the writer free commits every queued event in
//! one transaction and wakes the others. Under load one flush serves tens of requests, so the
//! audit trail stays durable without bounding throughput at one request per flush.

use diesel::prelude::*;
use openssl::sha::Sha256;

use crate::schema::{audit_event, break_glass_claim};
use crate::{DbConnection, Store, StoreError};

/// The hash before the first row.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit record to append. `resource` is the AuditEvent JSON (without `id`: the id is the
/// sequence number, known only when appended).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditEvent {
    pub recorded: String,
    pub patient_nhs: Option<String>,
    pub agent_user: String,
    pub agent_org: Option<String>,
    pub outcome: String,
    pub rule: Option<String>,
    pub break_glass: bool,
    pub resource: String,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = audit_event)]
pub struct AuditRow {
    pub seq: i64,
    pub recorded: String,
    pub patient_nhs: Option<String>,
    pub agent_user: String,
    pub agent_org: Option<String>,
    pub outcome: String,
    pub rule: Option<String>,
    pub break_glass: i32,
    pub resource: String,
    pub prev_hash: String,
    pub hash: String,
}

/// The link hash of one row.
pub fn link_hash(prev_hash: &str, seq: i64, resource: &str) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(b"\n");
    h.update(seq.to_string().as_bytes());
    h.update(b"\n");
    h.update(resource.as_bytes());
    h.finish().iter().map(|b| format!("{b:02x}")).collect()
}

/// Serialises appenders across processes on PostgreSQL; SQLite allows one writer at a time.
fn lock_for_append(conn: &mut DbConnection) -> QueryResult<()> {
    match conn {
        DbConnection::Postgres(c) => {
            diesel::sql_query("LOCK TABLE audit_event IN SHARE ROW EXCLUSIVE MODE")
                .execute(c)
                .map(|_| ())
        }
        DbConnection::Sqlite(_) => Ok(()),
    }
}

/// Audit appends waiting to be committed together (see the module documentation).
#[derive(Default)]
pub struct GroupCommit {
    state: std::sync::Mutex<Queue>,
    committed: std::sync::Condvar,
}

#[derive(Default)]
struct Queue {
    next_ticket: u64,
    waiting: std::collections::VecDeque<(u64, Vec<NewAuditEvent>)>,
    writing: bool,
    /// Results by ticket, taken by their owners.
    done: std::collections::HashMap<u64, Result<Vec<i64>, String>>,
}

/// The most events one transaction commits; more wait for the next.
const MAX_GROUP: usize = 1024;

impl Store {
    /// Appends `events` in order, in one transaction (perhaps shared with other callers'
    /// events), and returns their sequence numbers once that transaction has committed.
    pub fn append_audit(&self, events: &[NewAuditEvent]) -> Result<Vec<i64>, StoreError> {
        let q = &self.audit_queue;
        let lock = || {
            q.state
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
        };
        let mut state = lock();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.waiting.push_back((ticket, events.to_vec()));
        loop {
            if let Some(result) = state.done.remove(&ticket) {
                return result.map_err(|detail| StoreError::AuditBatch { detail });
            }
            if state.writing {
                state = q
                    .committed
                    .wait(state)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                continue;
            }
            // Lead: take the queue (up to MAX_GROUP events) and commit it.
            state.writing = true;
            // (ticket, how many of `all` are its events), in queue order.
            let mut group: Vec<(u64, usize)> = Vec::new();
            let mut all: Vec<NewAuditEvent> = Vec::new();
            while let Some((_, first)) = state.waiting.front() {
                if !all.is_empty() && all.len() + first.len() > MAX_GROUP {
                    break;
                }
                if let Some((t, events)) = state.waiting.pop_front() {
                    group.push((t, events.len()));
                    all.extend(events);
                }
            }
            drop(state);
            let result = self
                .conn()
                .and_then(|mut conn| crate::retry_busy(|| append_once(&mut conn, &all)));
            state = lock();
            match &result {
                Ok(seqs) => {
                    let mut seqs = seqs.iter().copied();
                    for &(t, n) in &group {
                        state.done.insert(t, Ok(seqs.by_ref().take(n).collect()));
                    }
                }
                Err(e) => {
                    let detail = crate::error_chain(e);
                    for &(t, _) in &group {
                        state.done.insert(t, Err(detail.clone()));
                    }
                }
            }
            state.writing = false;
            q.committed.notify_all();
        }
    }
}

/// One attempt at appending: reads the last link and writes the new ones in one transaction.
fn append_once(conn: &mut DbConnection, events: &[NewAuditEvent]) -> Result<Vec<i64>, StoreError> {
    conn.transaction(|conn| {
        lock_for_append(conn)?;
        let last: Option<(i64, String)> = audit_event::table
            .order(audit_event::seq.desc())
            .select((audit_event::seq, audit_event::hash))
            .first(conn)
            .optional()?;
        let (mut seq, mut prev) = last.unwrap_or((0, GENESIS.to_owned()));
        let mut out = Vec::with_capacity(events.len());
        for e in events {
            seq += 1;
            let hash = link_hash(&prev, seq, &e.resource);
            diesel::insert_into(audit_event::table)
                .values((
                    audit_event::seq.eq(seq),
                    audit_event::recorded.eq(&e.recorded),
                    audit_event::patient_nhs.eq(&e.patient_nhs),
                    audit_event::agent_user.eq(&e.agent_user),
                    audit_event::agent_org.eq(&e.agent_org),
                    audit_event::outcome.eq(&e.outcome),
                    audit_event::rule.eq(&e.rule),
                    audit_event::break_glass.eq(i32::from(e.break_glass)),
                    audit_event::resource.eq(&e.resource),
                    audit_event::prev_hash.eq(&prev),
                    audit_event::hash.eq(&hash),
                ))
                .execute(conn)?;
            out.push(seq);
            prev = hash;
        }
        Ok(out)
    })
    .map_err(|source: diesel::result::Error| StoreError::Database { source })
}

/// The result of walking the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    pub rows: u64,
    /// The first row whose stored hashes do not follow from the rows before it.
    pub first_broken: Option<i64>,
}

/// Walks the whole trail in order, in pages, recomputing every link (R-AUD-3).
pub fn verify_chain(conn: &mut DbConnection) -> Result<ChainReport, StoreError> {
    let mut prev = GENESIS.to_owned();
    let mut expected_seq = 1;
    let mut rows = 0;
    loop {
        let page: Vec<(i64, String, String, String)> = audit_event::table
            .filter(audit_event::seq.ge(expected_seq))
            .order(audit_event::seq.asc())
            .select((
                audit_event::seq,
                audit_event::resource,
                audit_event::prev_hash,
                audit_event::hash,
            ))
            .limit(1000)
            .load(conn)?;
        if page.is_empty() {
            return Ok(ChainReport {
                rows,
                first_broken: None,
            });
        }
        for (seq, resource, prev_hash, hash) in page {
            rows += 1;
            if seq != expected_seq || prev_hash != prev || hash != link_hash(&prev, seq, &resource)
            {
                return Ok(ChainReport {
                    rows,
                    first_broken: Some(expected_seq.min(seq)),
                });
            }
            prev = hash;
            expected_seq += 1;
        }
    }
}

/// What a privacy officer or a patient searches the trail by (R-AUD-4, R-AUD-5). Every field
/// given must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// One record by its sequence number (`AuditEvent/{seq}`).
    pub seq: Option<i64>,
    pub patient_nhs: Option<String>,
    pub agent_user: Option<String>,
    pub agent_org: Option<String>,
    pub outcome: Option<String>,
    /// Inclusive bounds on `recorded` (ISO text compares in time order).
    pub recorded_from: Option<String>,
    pub recorded_to: Option<String>,
    pub break_glass_only: bool,
}

/// Matching rows, newest first, at most `limit`, and how many match in all.
pub fn search_audit(
    conn: &mut DbConnection,
    filter: &AuditFilter,
    offset: i64,
    limit: i64,
) -> Result<(Vec<AuditRow>, i64), StoreError> {
    let build = || {
        let mut q = audit_event::table.into_boxed();
        if let Some(seq) = filter.seq {
            q = q.filter(audit_event::seq.eq(seq));
        }
        if let Some(p) = &filter.patient_nhs {
            q = q.filter(audit_event::patient_nhs.eq(p.clone()));
        }
        if let Some(a) = &filter.agent_user {
            q = q.filter(audit_event::agent_user.eq(a.clone()));
        }
        if let Some(o) = &filter.agent_org {
            q = q.filter(audit_event::agent_org.eq(o.clone()));
        }
        if let Some(o) = &filter.outcome {
            q = q.filter(audit_event::outcome.eq(o.clone()));
        }
        if let Some(f) = &filter.recorded_from {
            q = q.filter(audit_event::recorded.ge(f.clone()));
        }
        if let Some(t) = &filter.recorded_to {
            q = q.filter(audit_event::recorded.le(t.clone()));
        }
        if filter.break_glass_only {
            q = q.filter(audit_event::break_glass.eq(1));
        }
        q
    };
    let total: i64 = build().count().get_result(conn)?;
    let rows = build()
        .order(audit_event::seq.desc())
        .offset(offset)
        .limit(limit)
        .select(AuditRow::as_select())
        .load(conn)?;
    Ok((rows, total))
}

/// A self-claimed relationship.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = break_glass_claim)]
pub struct BreakGlassClaim {
    pub id: i64,
    pub user_id: String,
    pub org: String,
    pub nhs_number: String,
    pub purpose: String,
    pub reason: String,
    pub claimed_at: String,
    pub expires_at: String,
    pub reviewed_at: Option<String>,
}

/// A claim to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBreakGlass<'a> {
    pub user_id: &'a str,
    pub org: &'a str,
    pub nhs_number: &'a str,
    pub purpose: &'a str,
    pub reason: &'a str,
    pub claimed_at: &'a str,
    pub expires_at: &'a str,
}

/// Records a claim. Its audit event is appended first by the caller, so a claim never exists
/// without its audit record (the reverse, an audited claim that failed to be stored, is safe).
pub fn insert_break_glass(
    conn: &mut DbConnection,
    claim: &NewBreakGlass,
) -> Result<(), StoreError> {
    let NewBreakGlass {
        user_id,
        org,
        nhs_number,
        purpose,
        reason,
        claimed_at,
        expires_at,
    } = *claim;
    diesel::insert_into(break_glass_claim::table)
        .values((
            break_glass_claim::user_id.eq(user_id),
            break_glass_claim::org.eq(org),
            break_glass_claim::nhs_number.eq(nhs_number),
            break_glass_claim::purpose.eq(purpose),
            break_glass_claim::reason.eq(reason),
            break_glass_claim::claimed_at.eq(claimed_at),
            break_glass_claim::expires_at.eq(expires_at),
        ))
        .execute(conn)?;
    Ok(())
}

/// Claims on this patient still in force at `now` (ISO instant).
pub fn active_break_glass(
    conn: &mut DbConnection,
    nhs_number: &str,
    now: &str,
) -> Result<Vec<BreakGlassClaim>, StoreError> {
    Ok(break_glass_claim::table
        .filter(break_glass_claim::nhs_number.eq(nhs_number))
        .filter(break_glass_claim::expires_at.gt(now))
        .select(BreakGlassClaim::as_select())
        .load(conn)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::test_databases;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn event(n: usize) -> NewAuditEvent {
        NewAuditEvent {
            recorded: format!("2026-11-25T10:00:{n:02}Z"),
            patient_nhs: Some("9990000018".into()),
            agent_user: "u1".into(),
            agent_org: Some("M85001".into()),
            outcome: "0".into(),
            rule: Some("R-LR-1".into()),
            break_glass: false,
            resource: format!("{{\"resourceType\":\"AuditEvent\",\"n\":{n}}}"),
        }
    }

    #[test]
    fn r_aud_3_a_clean_chain_verifies_and_an_altered_row_is_named() -> TestResult {
        for db in test_databases("audit_chain")? {
            let store = Store::open(&db.url, 2)?;
            assert_eq!(store.append_audit(&[event(1), event(2)])?, vec![1, 2]);
            assert_eq!(store.append_audit(&[event(3)])?, vec![3]);
            let mut conn = store.conn()?;
            assert_eq!(
                verify_chain(&mut conn)?,
                ChainReport {
                    rows: 3,
                    first_broken: None
                },
                "{}",
                db.label
            );
            diesel::update(audit_event::table.find(2))
                .set(audit_event::resource.eq("{\"tampered\":true}"))
                .execute(&mut conn)?;
            assert_eq!(
                verify_chain(&mut conn)?.first_broken,
                Some(2),
                "{}",
                db.label
            );
        }
        Ok(())
    }

    /// R-AUD-2 under concurrency: 16 threads append at once, so appends are grouped. Every
    /// caller gets back the sequence numbers of its own events, in order, every event is
    /// stored once with its own content, and the chain verifies.
    #[test]
    fn r_aud_2_concurrent_appends_are_committed_in_groups_without_forking_the_chain() -> TestResult
    {
        for db in test_databases("audit_group")? {
            let store = Store::open(&db.url, 4)?;
            let results: Vec<Vec<(usize, i64)>> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..16)
                    .map(|t| {
                        let store = &store;
                        s.spawn(move || {
                            (0..20)
                                .flat_map(|i| {
                                    let ns = [t * 1000 + i * 2, t * 1000 + i * 2 + 1];
                                    let seqs = store
                                        .append_audit(&[event(ns[0]), event(ns[1])])
                                        .expect("append");
                                    assert_eq!(seqs.len(), 2);
                                    assert_eq!(
                                        seqs[1],
                                        seqs[0] + 1,
                                        "one caller's events stay together"
                                    );
                                    ns.into_iter().zip(seqs).collect::<Vec<_>>()
                                })
                                .collect()
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("thread"))
                    .collect()
            });
            let mut conn = store.conn()?;
            for (n, seq) in results.into_iter().flatten() {
                let resource: String = audit_event::table
                    .find(seq)
                    .select(audit_event::resource)
                    .first(&mut conn)?;
                assert_eq!(resource, event(n).resource, "{} seq {seq}", db.label);
            }
            assert_eq!(
                verify_chain(&mut conn)?,
                ChainReport {
                    rows: 640,
                    first_broken: None
                },
                "{}",
                db.label
            );
        }
        Ok(())
    }

    #[test]
    fn r_aud_3_a_deleted_row_breaks_the_chain_where_it_was() -> TestResult {
        for db in test_databases("audit_delete")? {
            let store = Store::open(&db.url, 2)?;
            store.append_audit(&[event(1), event(2), event(3)])?;
            let mut conn = store.conn()?;
            diesel::delete(audit_event::table.find(2)).execute(&mut conn)?;
            assert_eq!(
                verify_chain(&mut conn)?.first_broken,
                Some(2),
                "{}",
                db.label
            );
        }
        Ok(())
    }

    #[test]
    fn r_aud_4_the_trail_is_searched_by_patient_and_outcome() -> TestResult {
        for db in test_databases("audit_search")? {
            let store = Store::open(&db.url, 2)?;
            let mut refused = event(2);
            refused.outcome = "4".into();
            refused.patient_nhs = Some("9990000026".into());
            store.append_audit(&[event(1), refused])?;
            let mut conn = store.conn()?;
            let filter = AuditFilter {
                outcome: Some("4".into()),
                ..Default::default()
            };
            let (rows, total) = search_audit(&mut conn, &filter, 0, 10)?;
            assert_eq!((rows.len(), total), (1, 1));
            assert_eq!(rows[0].patient_nhs.as_deref(), Some("9990000026"));
        }
        Ok(())
    }
}

/// Remembers a client assertion's `jti`; `false` when it was used before (a replay).
pub fn remember_assertion(
    conn: &mut DbConnection,
    client_id: &str,
    jti: &str,
    expires_at: i64,
) -> Result<bool, StoreError> {
    use crate::schema::client_assertion_jti;
    let inserted = diesel::insert_into(client_assertion_jti::table)
        .values((
            client_assertion_jti::client_id.eq(client_id),
            client_assertion_jti::jti.eq(jti),
            client_assertion_jti::expires_at.eq(expires_at),
        ))
        .execute(conn);
    match inserted {
        Ok(_) => Ok(true),
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => Ok(false),
        Err(source) => Err(StoreError::Database { source }),
    }
}

#[cfg(test)]
mod replay_tests {
    use super::*;
    use crate::test_support::test_databases;

    #[test]
    fn a_reused_assertion_id_is_recognised() -> Result<(), Box<dyn std::error::Error>> {
        for db in test_databases("jti")? {
            let store = Store::open(&db.url, 2)?;
            let mut conn = store.conn()?;
            assert!(
                remember_assertion(&mut conn, "c", "j1", 10)?,
                "{}",
                db.label
            );
            assert!(
                !remember_assertion(&mut conn, "c", "j1", 10)?,
                "{}",
                db.label
            );
            assert!(
                remember_assertion(&mut conn, "other", "j1", 10)?,
                "{}",
                db.label
            );
        }
        Ok(())
    }
}

/// Self-claimed relationships, newest first; only those nobody has reviewed yet if `pending`.
pub fn break_glass_claims(
    conn: &mut DbConnection,
    pending: bool,
) -> Result<Vec<BreakGlassClaim>, StoreError> {
    let mut q = break_glass_claim::table.into_boxed();
    if pending {
        q = q.filter(break_glass_claim::reviewed_at.is_null());
    }
    Ok(q.order(break_glass_claim::id.desc())
        .select(BreakGlassClaim::as_select())
        .load(conn)?)
}

/// Marks a claim reviewed at `now`; `NotFound` for an unknown id. Reviewing twice keeps the
/// first review's time.
pub fn mark_break_glass_reviewed(
    conn: &mut DbConnection,
    id: i64,
    now: &str,
) -> Result<(), StoreError> {
    let exists = break_glass_claim::table
        .find(id)
        .select(break_glass_claim::id)
        .first::<i64>(conn)
        .optional()?;
    if exists.is_none() {
        return Err(StoreError::NotFound {
            entity: "break-glass claim",
            id: id.to_string(),
        });
    }
    diesel::update(
        break_glass_claim::table
            .find(id)
            .filter(break_glass_claim::reviewed_at.is_null()),
    )
    .set(break_glass_claim::reviewed_at.eq(now))
    .execute(conn)?;
    Ok(())
}
