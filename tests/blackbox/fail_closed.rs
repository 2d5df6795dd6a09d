//! Fail closed (access rules, unknown facts): a source that does not answer leaves the facts it
//! holds *unknown*, never *absent*, and every rule decides on them by showing less and saying
//! why. Each source that feeds a rule is made unreachable in turn, on a server of its own per
//! backend: on SQLite the GP replica is locked (an exclusive lock held on its file), the social
//! care replica and the HL7 feed's tables error; on PostgreSQL the replicas and the store are
//! cut off behind a TCP proxy (every connection dropped, new ones refused), as a stopped server
//! or a network failure would.

use std::sync::{Mutex, OnceLock};

use diesel::{Connection, RunQueryDsl};

use crate::harness::*;

const JANE: &str = "9990000018"; // GP M85001, RXK visit, allocated to sw-dud-0001
const KHAN: &str = "9990000026"; // objected in the GP record; M85001, RXK visit

/// A server whose sources a test can take away and bring back.
struct Breakable {
    server: Server,
    backend: Backend,
}

enum Backend {
    Sqlite {
        /// The connection holding the GP replica's exclusive lock while it is "down".
        gp_lock: Mutex<Option<diesel::SqliteConnection>>,
    },
    Postgres {
        gp: Proxy,
        sc: Proxy,
        store: Proxy,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Part {
    Gp,
    SocialCare,
    Hl7,
    Store,
}

fn sql(url: &str, statement: &str) {
    let pool = scr_db::open_pool(
        "test",
        url,
        &scr_db::PoolOptions {
            max_size: 1,
            ..Default::default()
        },
    )
    .unwrap();
    let mut conn = pool.get().unwrap();
    diesel::sql_query(statement)
        .execute(&mut conn)
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
}

impl Breakable {
    fn sqlite_url(&self, file: &str) -> String {
        format!("sqlite://{}", self.server.dir.join(file).display())
    }

    fn set(&self, part: Part, up: bool) {
        match (&self.backend, part) {
            (Backend::Sqlite { gp_lock }, Part::Gp) => {
                let mut lock = gp_lock.lock().unwrap();
                if up {
                    if let Some(mut c) = lock.take() {
                        diesel::sql_query("ROLLBACK").execute(&mut c).unwrap();
                    }
                } else if lock.is_none() {
                    let path = self.server.dir.join("gp.db");
                    let mut c = diesel::SqliteConnection::establish(path.to_str().unwrap())
                        .expect("open the GP replica");
                    diesel::sql_query("PRAGMA busy_timeout = 10000")
                        .execute(&mut c)
                        .unwrap();
                    diesel::sql_query("BEGIN EXCLUSIVE")
                        .execute(&mut c)
                        .expect("lock the GP replica");
                    *lock = Some(c);
                }
            }
            (Backend::Sqlite { .. }, Part::SocialCare) => {
                let url = self.sqlite_url("social-care-dudley.db");
                rename(&url, "person", "person_away", up);
            }
            (Backend::Sqlite { .. }, Part::Store) => {
                rename(
                    &self.server.store_url,
                    "consent_statement",
                    "consent_statement_away",
                    up,
                );
            }
            (_, Part::Hl7) => rename(&self.server.store_url, "hl7_visit", "hl7_visit_away", up),
            (Backend::Postgres { gp, sc, store }, part) => {
                let proxy = match part {
                    Part::Gp => gp,
                    Part::SocialCare => sc,
                    _ => store,
                };
                if up {
                    proxy.up()
                } else {
                    proxy.down()
                }
            }
        }
    }
}

fn rename(url: &str, table: &str, away: &str, up: bool) {
    let (from, to) = if up { (away, table) } else { (table, away) };
    sql(url, &format!("ALTER TABLE {from} RENAME TO {to}"));
}

/// One breakable server per backend; its tests take it in turn.
fn breakables() -> Vec<std::sync::MutexGuard<'static, Breakable>> {
    static SQLITE: OnceLock<Mutex<Breakable>> = OnceLock::new();
    static POSTGRES: OnceLock<Option<Mutex<Breakable>>> = OnceLock::new();
    let sqlite = SQLITE.get_or_init(|| {
        let server = Server::sqlite_prepared("fail-closed", 0, |dir| {
            // A supplier replica in rollback-journal mode, so that a lock on it keeps readers out.
            let mut c =
                diesel::SqliteConnection::establish(dir.join("gp.db").to_str().unwrap()).unwrap();
            diesel::sql_query("PRAGMA journal_mode = DELETE")
                .execute(&mut c)
                .unwrap();
        });
        Mutex::new(Breakable {
            server,
            backend: Backend::Sqlite {
                gp_lock: Mutex::new(None),
            },
        })
    });
    let mut out = vec![sqlite.lock().unwrap_or_else(|p| p.into_inner())];
    let pg = POSTGRES.get_or_init(|| {
        let admin = std::env::var("TEST_POSTGRES_URL")
            .ok()
            .filter(|u| !u.is_empty())?;
        let target = authority(&admin);
        let (gp, sc, store) = (
            Proxy::start(target.clone()),
            Proxy::start(target.clone()),
            Proxy::start(target),
        );
        let server = Server::postgres_named("failclosed", &admin, &|db, url| match db {
            "gp" => gp.route(url),
            "sc" => sc.route(url),
            _ => store.route(url),
        });
        Some(Mutex::new(Breakable {
            server,
            backend: Backend::Postgres { gp, sc, store },
        }))
    });
    if let Some(pg) = pg {
        out.push(pg.lock().unwrap_or_else(|p| p.into_inner()));
    }
    out
}

/// Runs `check` with `part` taken away, and brings it back even if the check fails.
fn with_down(b: &Breakable, part: Part, check: impl FnOnce(&Server)) {
    struct Restore<'a>(&'a Breakable, Part);
    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            self.0.set(self.1, true);
        }
    }
    b.set(part, false);
    let _restore = Restore(b, part);
    check(&b.server);
}

fn everything(s: &Server, nhs: &str, token: &str) -> Response {
    s.get(&format!("/Patient/{nhs}/$everything"), Some(token))
}

#[test]
fn r_obj_2_objection_status_unknown_while_the_gp_replica_is_down_shows_only_own_org_records() {
    for b in breakables() {
        let s = &b.server;
        // Up: the RXK clinician sees Jane's GP and council records (she has not objected).
        let before = everything(s, JANE, &clinician(s, "RXK")).json();
        let all = holders(&before);
        assert!(
            all.contains(&"M85001".to_owned()) && all.contains(&"LA-DUD".to_owned()),
            "{all:?}"
        );

        with_down(&b, Part::Gp, |s| {
            for nhs in [JANE, KHAN] {
                let r = everything(s, nhs, &clinician(s, "RXK"));
                assert_eq!(r.status, 200, "R-LR-2 from the HL7 feed still holds");
                let bundle = r.json();
                assert_eq!(
                    holders(&bundle),
                    ["RXK"],
                    "{nhs}: only the trust's own records and demographics"
                );
                let w = warnings(&bundle);
                assert!(
                    w.contains("objection status could not be checked")
                        && w.contains("GP replica gp"),
                    "{nhs}: the Bundle says why it is sparse and names the source: {w}"
                );
            }
            // An allocated social worker (relationship from the council, which answered).
            let sw = staff_as(s, "sw-dud-0001", "LA-DUD", "R8014", "user/*.rs");
            let bundle = everything(s, JANE, &sw).json();
            assert_eq!(holders(&bundle), ["LA-DUD"]);
            assert!(warnings(&bundle).contains("objection status could not be checked"));
            // A backend service of RXK: bound by R-OBJ-2 like anyone else.
            let bundle = everything(s, JANE, &system(s, "RXK", "system/*.rs")).json();
            assert_eq!(holders(&bundle), ["RXK"]);
            // Searches and reads by id go through the same decision.
            let obs = s
                .all_pages(
                    &format!("/Observation?patient={JANE}"),
                    &clinician(s, "RXK"),
                )
                .0;
            assert!(obs.iter().all(|o| ods_tags(o) == ["RXK"]), "search");
            let council_alert = of_type(&before, "Flag")
                .into_iter()
                .find(|f| ods_tags(f) == ["LA-DUD"])
                .expect("a council alert")["id"]
                .as_str()
                .unwrap()
                .to_owned();
            let r = s.get(
                &format!("/Flag/{council_alert}"),
                Some(&clinician(s, "RXK")),
            );
            assert_eq!((r.status, r.issue_code().as_str()), (404, "not-found"));
        });
        // $explain says the same, with the unknown fact and the source that did not answer.
        with_down(&b, Part::Gp, |s| {
            let officer = staff(s, "M85001", "R0001", "user/AuditEvent.rs");
            let describe = [("organization", "RXK"), ("role", "R8000"), ("user", "u")];
            let p = crate::explain::explain(s, &officer, JANE, &describe).json();
            assert!(
                crate::explain::evaluations(&p)
                    .iter()
                    .any(|(r, res, d)| r == "R-OBJ-2"
                        && res == "unknown"
                        && d.contains("GP replica gp")),
                "{p}"
            );
            assert_eq!(
                crate::explain::param(&p, "unanswered"),
                Some("GP replica gp")
            );
            assert!(crate::explain::withheld(&p, "Flag", "R-OBJ-2") > 0, "{p}");
            let describe = [("organization", "M85001"), ("role", "R8000"), ("user", "u")];
            let p = crate::explain::explain(s, &officer, JANE, &describe).json();
            assert!(crate::explain::evaluations(&p)
                .iter()
                .any(|(r, res, _)| r == "R-LR-5" && res == "unknown"));
        });
        // R-OBJ-5-like: once the GP answers again, sharing is restored at once.
        let after = everything(s, JANE, &clinician(s, "RXK")).json();
        assert_eq!(holders(&after), all);
        assert!(!warnings(&after).contains("could not be checked"));
    }
}

#[test]
fn r_obj_6_the_patient_still_sees_their_own_record_while_the_gp_replica_is_down() {
    for b in breakables() {
        with_down(&b, Part::Gp, |s| {
            let bundle = everything(s, JANE, &patient(s, JANE, "P9")).json();
            let h = holders(&bundle);
            assert!(
                h.contains(&"RXK".to_owned()) && h.contains(&"LA-DUD".to_owned()),
                "{h:?}"
            );
            assert!(
                warnings(&bundle).contains("GP replica gp"),
                "the missing source is named"
            );
        });
    }
}

#[test]
fn r_lr_5_a_relationship_is_never_assumed_from_a_source_that_did_not_answer() {
    for b in breakables() {
        let cases: [(Part, &str, String, &str); 3] = [
            (
                Part::Gp,
                JANE,
                clinician(&b.server, "M85001"),
                "GP replica gp",
            ),
            (
                Part::SocialCare,
                JANE,
                staff_as(&b.server, "sw-dud-0001", "LA-DUD", "R8014", "user/*.rs"),
                "social care replica sc-dudley",
            ),
            (Part::Hl7, JANE, clinician(&b.server, "RXK"), "HL7 v2 feed"),
        ];
        for (part, nhs, token, source) in cases {
            assert_eq!(
                everything(&b.server, nhs, &token).status,
                200,
                "{part:?} up"
            );
            with_down(&b, part, |s| {
                for path in [
                    format!("/Patient/{nhs}/$everything"),
                    format!("/Patient/{nhs}"),
                    format!("/Flag?patient={nhs}"),
                ] {
                    let r = s.get(&path, Some(&token));
                    assert_eq!(
                        (r.status, r.issue_code().as_str()),
                        (403, "forbidden"),
                        "{part:?} down: {path}"
                    );
                    let text = String::from_utf8_lossy(&r.body).to_string();
                    assert!(
                        text.contains("could not be checked") && text.contains(source),
                        "{part:?}: the refusal names the source: {text}"
                    );
                    assert!(text.contains("R-LR-5"), "{text}");
                }
            });
        }
    }
}

#[test]
fn r_obj_2_a_source_that_holds_no_objections_being_down_restricts_nothing_else() {
    for b in breakables() {
        for part in [Part::SocialCare, Part::Hl7] {
            with_down(&b, part, |s| {
                let bundle = everything(s, JANE, &clinician(s, "M85001")).json();
                let h = holders(&bundle);
                assert!(h.contains(&"M85001".to_owned()), "{part:?}: {h:?}");
                let w = warnings(&bundle);
                assert!(!w.contains("objection status"), "{part:?}: {w}");
                assert!(w.contains("missing from this response"), "{part:?}: {w}");
            });
        }
    }
}

#[test]
fn r_aud_2_the_store_down_sends_no_data() {
    for b in breakables() {
        with_down(&b, Part::Store, |s| {
            let r = everything(s, JANE, &clinician(s, "M85001"));
            assert_eq!((r.status, r.issue_code().as_str()), (503, "transient"));
            assert!(r.header("Retry-After").is_some());
            assert!(
                !String::from_utf8_lossy(&r.body).contains("Smith"),
                "objections registered here and the audit are unknown: nothing leaves"
            );
        });
        let s = &b.server;
        assert_eq!(everything(s, JANE, &clinician(s, "M85001")).status, 200);
    }
}

#[test]
fn r_aud_1_the_audit_names_the_rule_and_counts_what_was_withheld_while_a_source_is_down() {
    for b in breakables() {
        let user = format!("audit-counts-{}-{}", std::process::id(), now());
        with_down(&b, Part::Gp, |s| {
            let t = staff_as(s, &user, "RXK", "R8000", "user/*.rs");
            assert_eq!(everything(s, JANE, &t).status, 200);
        });
        let s = &b.server;
        let officer = staff(s, "M85001", "R0001", "user/AuditEvent.rs");
        let events = s
            .get(&format!("/AuditEvent?agent={user}"), Some(&officer))
            .json();
        let event = events["entry"][0]["resource"].clone();
        let details = event["entity"][0]["detail"].to_string();
        assert!(
            details.contains("\"decided-by\"") && details.contains("R-LR-2"),
            "{details}"
        );
        assert!(details.contains("withheld-R-OBJ-2"), "{details}");
        // A patient reading their own access log sees who and why, not what was withheld.
        let own = s
            .get(
                &format!("/AuditEvent?agent={user}"),
                Some(&patient(s, JANE, "P9")),
            )
            .json();
        assert!(!own.to_string().contains("withheld-R-"), "{own}");
    }
}

#[test]
fn health_ready_names_a_source_that_is_down_and_fails_without_the_store() {
    let ready = |s: &Server| {
        // Outside /fhir: the request target in absolute form.
        let url = format!("http://127.0.0.1:{}/health/ready", s.port);
        let r = s.request("GET", &url, &[], b"");
        let body = String::from_utf8_lossy(&r.body).into_owned();
        assert!(!body.contains("999000"), "no NHS number in health: {body}");
        (r.status, r.json())
    };
    for b in breakables() {
        let s = &b.server;
        let url = format!("http://127.0.0.1:{}/health/live", s.port);
        let live = s.request("GET", &url, &[], b"");
        assert_eq!(live.status, 200);
        let (status, body) = ready(s);
        assert_eq!(
            (status, body["status"].as_str()),
            (200, Some("pass")),
            "{body}"
        );
        assert_eq!(body["checks"]["store"][0]["status"], "pass");
        assert_eq!(body["checks"]["source:gp"][0]["status"], "pass");
        with_down(&b, Part::Gp, |s| {
            let (status, body) = ready(s);
            assert_eq!(
                (status, body["status"].as_str()),
                (200, Some("warn")),
                "{body}"
            );
            assert_eq!(body["checks"]["source:gp"][0]["status"], "warn", "{body}");
            assert_eq!(body["checks"]["store"][0]["status"], "pass");
        });
        if matches!(b.backend, Backend::Postgres { .. }) {
            with_down(&b, Part::Store, |s| {
                let (status, body) = ready(s);
                assert_eq!(
                    (status, body["status"].as_str()),
                    (503, Some("fail")),
                    "{body}"
                );
            });
        }
    }
}

#[test]
fn metrics_count_source_errors_and_timeouts_by_source_name() {
    use crate::operations::{scrape, value};
    for b in breakables() {
        let s = &b.server;
        let t = clinician(s, "M85001");
        for (part, source) in [(Part::SocialCare, "sc-dudley"), (Part::Gp, "gp")] {
            let failures = |samples: &[crate::operations::Sample]| {
                value(samples, "scr_source_errors_total", &[("source", source)])
                    + value(samples, "scr_source_timeouts_total", &[("source", source)])
            };
            let (_, before) = scrape(s);
            with_down(&b, part, |s| {
                // 200 with a warning, or 403 when the relationship could not be checked (the
                // GP's): either way the source was asked and failed.
                let r = everything(s, JANE, &t);
                assert!([200, 403].contains(&r.status), "{}", r.status);
            });
            let (text, after) = scrape(s);
            assert!(
                failures(&after) > failures(&before),
                "{source} down: its errors or timeouts are counted\n{text}"
            );
            assert!(
                value(
                    &after,
                    "scr_source_duration_seconds_count",
                    &[("source", source)]
                ) > value(
                    &before,
                    "scr_source_duration_seconds_count",
                    &[("source", source)]
                ),
                "{text}"
            );
        }
    }
}
