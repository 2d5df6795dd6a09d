//! The audit trail (R-AUD-1..5) and self-claimed relationships (R-LR-4).
//!
//! Append-only and tamper-evident: every row's `hash` is SHA-256 over every stored column of the
//! row (its sequence number, each searchable column, its AuditEvent JSON) and the previous row's
//! hash, in a length-prefixed encoding ([`link_hash_v2`], `hash_version` 2), so changing,
//! removing or inserting a row, or only a column searches use (`patient_nhs`, `break_glass`,
//! ...), breaks the chain at that row, and [`verify_chain`] names it. Rows written before
//! migration 000007 carry `hash_version` 1 ([`link_hash`]: the previous hash, `seq` and the JSON
//! only) and are verified that way; a version 1 row after a version 2 row is a downgrade and
//! breaks the chain. A chain alone cannot show that its newest rows were removed, or that it was
//! recomputed by someone with database access: signed checkpoints outside the database
//! ([`crate::checkpoint`]) anchor it. See docs/audit.md.
//!
//! Rows are appended by one writer at a time (in process: [`GroupCommit`]; across processes on
//! PostgreSQL: a table lock) so the chain never forks, and [`Store::append_audit`] commits before
//! it returns: the caller sends no data until its audit is durable (R-AUD-2).
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

/// The hash version of every row appended now.
pub const HASH_VERSION: i32 = 2;

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
    pub hash_version: i32,
}

/// Every column a version 2 link hash covers, as stored (`break_glass` as its integer, so a
/// `2` where `1` was is a change too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainedColumns<'a> {
    pub seq: i64,
    pub recorded: &'a str,
    pub patient_nhs: Option<&'a str>,
    pub agent_user: &'a str,
    pub agent_org: Option<&'a str>,
    pub outcome: &'a str,
    pub rule: Option<&'a str>,
    pub break_glass: i32,
    pub resource: &'a str,
    pub prev_hash: &'a str,
}

impl AuditRow {
    /// The columns its version 2 hash covers.
    pub fn chained(&self) -> ChainedColumns<'_> {
        ChainedColumns {
            seq: self.seq,
            recorded: &self.recorded,
            patient_nhs: self.patient_nhs.as_deref(),
            agent_user: &self.agent_user,
            agent_org: self.agent_org.as_deref(),
            outcome: &self.outcome,
            rule: self.rule.as_deref(),
            break_glass: self.break_glass,
            resource: &self.resource,
            prev_hash: &self.prev_hash,
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The version 1 link hash (rows written before migration 000007): SHA-256 over the previous
/// hash, `\n`, the sequence number in decimal, `\n`, the AuditEvent JSON. It does not cover the
/// searchable columns.
pub fn link_hash(prev_hash: &str, seq: i64, resource: &str) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(b"\n");
    h.update(seq.to_string().as_bytes());
    h.update(b"\n");
    h.update(resource.as_bytes());
    hex(&h.finish())
}

/// The version 2 link hash: SHA-256 over the bytes `scr-audit-chain/2\n` followed by, for each of
/// `seq`, `recorded`, `patient_nhs`, `agent_user`, `agent_org`, `outcome`, `rule`,
/// `break_glass`, `resource`, `prev_hash` in that order, the byte `0` for NULL, or the byte `1`,
/// the length of the value's UTF-8 bytes as an 8-byte big-endian number, and those bytes
/// (`seq` and `break_glass` as decimal text); as lowercase hex. Unambiguous: no two different
/// rows encode to the same bytes.
pub fn link_hash_v2(row: &ChainedColumns) -> String {
    let seq = row.seq.to_string();
    let break_glass = row.break_glass.to_string();
    let fields: [Option<&str>; 10] = [
        Some(&seq),
        Some(row.recorded),
        row.patient_nhs,
        Some(row.agent_user),
        row.agent_org,
        Some(row.outcome),
        row.rule,
        Some(&break_glass),
        Some(row.resource),
        Some(row.prev_hash),
    ];
    let mut h = Sha256::new();
    h.update(b"scr-audit-chain/2\n");
    for field in fields {
        match field {
            None => h.update(&[0]),
            Some(v) => {
                h.update(&[1]);
                h.update(&(v.len() as u64).to_be_bytes());
                h.update(v.as_bytes());
            }
        }
    }
    hex(&h.finish())
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
            let started = std::time::Instant::now();
            let result = self
                .conn()
                .and_then(|mut conn| crate::retry_busy(|| append_once(&mut conn, &all)));
            // Group commit, observed (docs/operations.md): how long one transaction took and
            // how many events (of how many requests) it carried.
            metrics::histogram!("scr_audit_commit_duration_seconds")
                .record(started.elapsed().as_secs_f64());
            metrics::histogram!("scr_audit_batch_events").record(all.len() as f64);
            if result.is_err() {
                metrics::counter!("scr_audit_commit_failures_total").increment(1);
            }
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
            let break_glass = i32::from(e.break_glass);
            let hash = link_hash_v2(&ChainedColumns {
                seq,
                recorded: &e.recorded,
                patient_nhs: e.patient_nhs.as_deref(),
                agent_user: &e.agent_user,
                agent_org: e.agent_org.as_deref(),
                outcome: &e.outcome,
                rule: e.rule.as_deref(),
                break_glass,
                resource: &e.resource,
                prev_hash: &prev,
            });
            diesel::insert_into(audit_event::table)
                .values((
                    audit_event::seq.eq(seq),
                    audit_event::recorded.eq(&e.recorded),
                    audit_event::patient_nhs.eq(&e.patient_nhs),
                    audit_event::agent_user.eq(&e.agent_user),
                    audit_event::agent_org.eq(&e.agent_org),
                    audit_event::outcome.eq(&e.outcome),
                    audit_event::rule.eq(&e.rule),
                    audit_event::break_glass.eq(break_glass),
                    audit_event::resource.eq(&e.resource),
                    audit_event::prev_hash.eq(&prev),
                    audit_event::hash.eq(&hash),
                    audit_event::hash_version.eq(HASH_VERSION),
                ))
                .execute(conn)?;
            out.push(seq);
            prev = hash;
        }
        Ok(out)
    })
    .map_err(|source: diesel::result::Error| StoreError::Database { source })
}

/// Why a row breaks the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Break {
    /// The row expected next is missing: it was removed (or the row found was inserted).
    Missing,
    /// Its `prev_hash` is not the hash of the row before it.
    Link,
    /// Its hash does not follow from its own columns: it was altered.
    Altered,
    /// A version 1 row after version 2 rows began: a downgrade.
    Downgrade,
    /// A `hash_version` this build does not know.
    UnknownVersion(i32),
}

impl std::fmt::Display for Break {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Break::Missing => f.write_str("the record expected here is missing: it was removed, or the next one inserted"),
            Break::Link => f.write_str("its previous-hash is not the hash of the record before it: that record was altered, removed or replaced"),
            Break::Altered => f.write_str("its hash does not match its stored columns: it was altered"),
            Break::Downgrade => f.write_str("it carries hash version 1 after version 2 records began: a downgrade"),
            Break::UnknownVersion(v) => write!(f, "it carries an unknown hash version {v}"),
        }
    }
}

/// A point the chain must pass through: a signed checkpoint's record and hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub seq: i64,
    pub hash: String,
}

/// The result of walking the chain.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChainReport {
    pub rows: u64,
    /// The first row whose stored hashes do not follow from the rows before it.
    pub first_broken: Option<i64>,
    /// Why it breaks there.
    pub why: Option<Break>,
    /// Rows with version 1 hashes (their searchable columns are not covered).
    pub legacy_rows: u64,
    /// The last row walked while the chain held: (seq, hash).
    pub head: Option<(i64, String)>,
    /// The first anchor whose record holds another hash (the chain up to it was recomputed).
    pub anchor_mismatch: Option<Anchor>,
    /// The furthest anchor beyond the last row (the newest rows were removed).
    pub beyond_end: Option<Anchor>,
}

impl ChainReport {
    /// What failed, one sentence each; empty when the chain holds.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let (Some(seq), Some(why)) = (self.first_broken, self.why) {
            out.push(format!(
                "audit chain broken at record {seq} (AuditEvent/{seq}): {why}"
            ));
        }
        if let Some(a) = &self.anchor_mismatch {
            out.push(format!(
                "record {} does not hold the hash its signed checkpoint recorded: the chain up to it was rewritten and recomputed",
                a.seq
            ));
        }
        if let Some(a) = &self.beyond_end {
            let end = self.head.as_ref().map_or(0, |(seq, _)| *seq);
            out.push(format!(
                "the trail ends at record {end} but a signed checkpoint covers record {}: the newest records were removed (truncated)",
                a.seq
            ));
        }
        out
    }
}

/// Where a walk starts: the next record expected, the hash before it, and whether version 2
/// rows have begun before it.
struct Start {
    seq: i64,
    prev: String,
    v2_started: bool,
}

/// Walks the whole trail in order, in pages, recomputing every link (R-AUD-3).
pub fn verify_chain(conn: &mut DbConnection) -> Result<ChainReport, StoreError> {
    verify_chain_anchored(conn, &[])
}

/// [`verify_chain`], also checking that the chain passes through every anchor: the record at
/// each anchor's `seq` holds its hash, and the trail reaches the furthest anchor.
pub fn verify_chain_anchored(
    conn: &mut DbConnection,
    anchors: &[Anchor],
) -> Result<ChainReport, StoreError> {
    let mut anchors = anchors.to_vec();
    anchors.sort_by_key(|a| a.seq);
    let mut report = ChainReport::default();
    for a in anchors.iter().filter(|a| a.seq <= 0) {
        if a.seq < 0 || a.hash != GENESIS {
            report.anchor_mismatch.get_or_insert_with(|| a.clone());
        }
    }
    let start = Start {
        seq: 1,
        prev: GENESIS.to_owned(),
        v2_started: false,
    };
    walk(conn, start, &anchors, &mut report)?;
    Ok(report)
}

/// Checks that the trail still passes through `anchor` and that every row after it follows
/// from it; the head reached. For the checkpoint writer, which must never sign a head that does
/// not follow from the last checkpoint.
pub fn verify_from(conn: &mut DbConnection, anchor: &Anchor) -> Result<ChainReport, StoreError> {
    let mut report = ChainReport::default();
    if anchor.seq <= 0 {
        if anchor.seq < 0 || anchor.hash != GENESIS {
            report.anchor_mismatch = Some(anchor.clone());
            return Ok(report);
        }
        walk(
            conn,
            Start {
                seq: 1,
                prev: GENESIS.to_owned(),
                v2_started: false,
            },
            &[],
            &mut report,
        )?;
        return Ok(report);
    }
    let row: Option<(String, i32)> = audit_event::table
        .find(anchor.seq)
        .select((audit_event::hash, audit_event::hash_version))
        .first(conn)
        .optional()?;
    match row {
        None => {
            report.beyond_end = Some(anchor.clone());
        }
        Some((hash, _)) if hash != anchor.hash => {
            report.anchor_mismatch = Some(anchor.clone());
        }
        Some((hash, version)) => {
            report.head = Some((anchor.seq, hash.clone()));
            let start = Start {
                seq: anchor.seq + 1,
                prev: hash,
                v2_started: version == HASH_VERSION,
            };
            walk(conn, start, &[], &mut report)?;
        }
    }
    Ok(report)
}

/// Walks from `start` to the end or the first break, comparing anchors on the way (`anchors`
/// sorted by `seq`).
fn walk(
    conn: &mut DbConnection,
    start: Start,
    anchors: &[Anchor],
    report: &mut ChainReport,
) -> Result<(), StoreError> {
    let Start {
        seq: mut expected_seq,
        mut prev,
        mut v2_started,
    } = start;
    let first = expected_seq;
    let mut pending = anchors.iter().filter(|a| a.seq >= first).peekable();
    loop {
        let page: Vec<AuditRow> = audit_event::table
            .filter(audit_event::seq.ge(expected_seq))
            .order(audit_event::seq.asc())
            .select(AuditRow::as_select())
            .limit(1000)
            .load(conn)?;
        if page.is_empty() {
            report.beyond_end = pending.last().cloned();
            return Ok(());
        }
        for row in page {
            report.rows += 1;
            let why = if row.seq != expected_seq {
                Some(Break::Missing)
            } else if row.prev_hash != prev {
                Some(Break::Link)
            } else {
                match row.hash_version {
                    1 if v2_started => Some(Break::Downgrade),
                    1 => {
                        report.legacy_rows += 1;
                        (row.hash != link_hash(&prev, row.seq, &row.resource))
                            .then_some(Break::Altered)
                    }
                    HASH_VERSION => {
                        v2_started = true;
                        (row.hash != link_hash_v2(&row.chained())).then_some(Break::Altered)
                    }
                    other => Some(Break::UnknownVersion(other)),
                }
            };
            if let Some(why) = why {
                report.first_broken = Some(expected_seq.min(row.seq));
                report.why = Some(why);
                return Ok(());
            }
            while let Some(a) = pending.next_if(|a| a.seq <= row.seq) {
                if a.seq == row.seq && a.hash != row.hash {
                    report.anchor_mismatch.get_or_insert_with(|| a.clone());
                }
            }
            report.head = Some((row.seq, row.hash.clone()));
            prev = row.hash;
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
pub(crate) mod tests {
    use super::*;
    use crate::test_support::test_databases;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// An audit event numbered `n`, for tests of the trail.
    pub(crate) fn event(n: usize) -> NewAuditEvent {
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
            let report = verify_chain(&mut conn)?;
            assert_eq!(
                (report.rows, report.first_broken),
                (3, None),
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
            let report = verify_chain(&mut conn)?;
            assert_eq!(
                (report.rows, report.first_broken),
                (640, None),
                "{}",
                db.label
            );
        }
        Ok(())
    }

    /// Puts a saved row back exactly as it was.
    pub(crate) fn restore(conn: &mut DbConnection, row: &AuditRow) -> QueryResult<()> {
        diesel::delete(audit_event::table.find(row.seq)).execute(conn)?;
        insert_row(conn, row)
    }

    /// Inserts a row as given, hashes and all (what someone with database access can do).
    pub(crate) fn insert_row(conn: &mut DbConnection, row: &AuditRow) -> QueryResult<()> {
        diesel::insert_into(audit_event::table)
            .values((
                audit_event::seq.eq(row.seq),
                audit_event::recorded.eq(&row.recorded),
                audit_event::patient_nhs.eq(&row.patient_nhs),
                audit_event::agent_user.eq(&row.agent_user),
                audit_event::agent_org.eq(&row.agent_org),
                audit_event::outcome.eq(&row.outcome),
                audit_event::rule.eq(&row.rule),
                audit_event::break_glass.eq(row.break_glass),
                audit_event::resource.eq(&row.resource),
                audit_event::prev_hash.eq(&row.prev_hash),
                audit_event::hash.eq(&row.hash),
                audit_event::hash_version.eq(row.hash_version),
            ))
            .execute(conn)
            .map(|_| ())
    }

    pub(crate) fn all_rows(conn: &mut DbConnection) -> QueryResult<Vec<AuditRow>> {
        audit_event::table
            .order(audit_event::seq.asc())
            .select(AuditRow::as_select())
            .load(conn)
    }

    /// Issue 11 item 6: the hash covered only the JSON, so nulling `patient_nhs` hid an access
    /// from the patient's log while the chain verified. Now every stored column is covered.
    #[test]
    fn item6_r_aud_3_nulling_patient_nhs_breaks_the_chain() -> TestResult {
        for db in test_databases("item6_columns")? {
            let store = Store::open(&db.url, 2)?;
            store.append_audit(&[event(1), event(2), event(3)])?;
            let mut conn = store.conn()?;
            let saved = all_rows(&mut conn)?;
            assert!(saved.iter().all(|r| r.hash_version == HASH_VERSION));
            for tamper in [
                "UPDATE audit_event SET patient_nhs = NULL WHERE seq = 2",
                "UPDATE audit_event SET patient_nhs = '9990000026' WHERE seq = 2",
                "UPDATE audit_event SET break_glass = 1 WHERE seq = 2",
                "UPDATE audit_event SET break_glass = 2 WHERE seq = 2",
                "UPDATE audit_event SET agent_user = 'someone-else' WHERE seq = 2",
                "UPDATE audit_event SET agent_org = NULL WHERE seq = 2",
                "UPDATE audit_event SET outcome = '0' || outcome WHERE seq = 2",
                "UPDATE audit_event SET rule = NULL WHERE seq = 2",
                "UPDATE audit_event SET recorded = '2020-01-01T00:00:00Z' WHERE seq = 2",
                "UPDATE audit_event SET hash_version = 1 WHERE seq = 2",
            ] {
                diesel::sql_query(tamper).execute(&mut conn)?;
                let report = verify_chain(&mut conn)?;
                assert_eq!(report.first_broken, Some(2), "{}: {tamper}", db.label);
                assert!(
                    report.problems()[0].starts_with("audit chain broken at record 2"),
                    "{}: {:?}",
                    db.label,
                    report.problems()
                );
                restore(&mut conn, &saved[1])?;
                assert_eq!(verify_chain(&mut conn)?.first_broken, None, "{}", db.label);
            }
        }
        Ok(())
    }

    /// Rows hashed before migration 000007 (version 1) still verify the old way, and version 2
    /// rows chain on from them.
    #[test]
    fn item6_r_aud_3_legacy_version_1_rows_verify_and_version_2_rows_follow_them() -> TestResult {
        for db in test_databases("item6_legacy")? {
            let store = Store::open(&db.url, 2)?;
            let mut conn = store.conn()?;
            let mut prev = GENESIS.to_owned();
            for seq in 1..=2 {
                let e = event(seq as usize);
                let hash = link_hash(&prev, seq, &e.resource);
                insert_row(&mut conn, &legacy_row(seq, &e, &prev, &hash))?;
                prev = hash;
            }
            store.append_audit(&[event(3), event(4)])?;
            let report = verify_chain(&mut conn)?;
            assert_eq!(
                (report.rows, report.first_broken, report.legacy_rows),
                (4, None, 2),
                "{}",
                db.label
            );
            let rows = all_rows(&mut conn)?;
            assert_eq!(
                rows.iter().map(|r| r.hash_version).collect::<Vec<_>>(),
                vec![1, 1, 2, 2]
            );
            assert_eq!(rows[2].prev_hash, rows[1].hash, "{}", db.label);
        }
        Ok(())
    }

    fn legacy_row(seq: i64, e: &NewAuditEvent, prev: &str, hash: &str) -> AuditRow {
        AuditRow {
            seq,
            recorded: e.recorded.clone(),
            patient_nhs: e.patient_nhs.clone(),
            agent_user: e.agent_user.clone(),
            agent_org: e.agent_org.clone(),
            outcome: e.outcome.clone(),
            rule: e.rule.clone(),
            break_glass: i32::from(e.break_glass),
            resource: e.resource.clone(),
            prev_hash: prev.to_owned(),
            hash: hash.to_owned(),
            hash_version: 1,
        }
    }

    /// A version 1 row after version 2 rows began is a downgrade, even with a correct version
    /// 1 hash: someone rewrote it the old way to escape the columns version 2 covers.
    #[test]
    fn item6_r_aud_3_a_version_1_row_after_version_2_rows_is_a_downgrade() -> TestResult {
        for db in test_databases("item6_downgrade")? {
            let store = Store::open(&db.url, 2)?;
            store.append_audit(&[event(1), event(2)])?;
            let mut conn = store.conn()?;
            let rows = all_rows(&mut conn)?;
            // Appended after the version 2 rows, the old way.
            let e = event(3);
            let hash = link_hash(&rows[1].hash, 3, &e.resource);
            insert_row(&mut conn, &legacy_row(3, &e, &rows[1].hash, &hash))?;
            let report = verify_chain(&mut conn)?;
            assert_eq!(
                (report.first_broken, report.why),
                (Some(3), Some(Break::Downgrade)),
                "{}",
                db.label
            );
            assert!(
                report.problems()[0].contains("downgrade"),
                "{:?}",
                report.problems()
            );
            // The last version 2 row rewritten as version 1, patient removed, hash recomputed.
            diesel::delete(audit_event::table.find(3)).execute(&mut conn)?;
            let mut e = event(2);
            e.patient_nhs = None;
            let hash = link_hash(&rows[0].hash, 2, &e.resource);
            restore(&mut conn, &legacy_row(2, &e, &rows[0].hash, &hash))?;
            let report = verify_chain(&mut conn)?;
            assert_eq!(
                (report.first_broken, report.why),
                (Some(2), Some(Break::Downgrade)),
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
