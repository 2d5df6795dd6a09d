//! R-AUD: every access and refusal is audited before the response, the trail is hash-chained and
//! verifiable, privacy officers search it, and patients see who looked at their record.

use std::process::Command;

use diesel::prelude::*;
use serde_json::Value;

use crate::harness::*;

const JANE: &str = "9990000018";
const LINDA: &str = "9990000069";
const KHAN: &str = "9990000026";

fn privacy_officer(s: &Server) -> String {
    staff_as(s, "po-0001", "M85001", "R0001", "user/AuditEvent.rs")
}

fn unique_user(tag: &str) -> String {
    format!("{tag}-{}-{}", std::process::id(), now())
}

fn events(s: &Server, query: &str, token: &str) -> Vec<Value> {
    let r = s.get(&format!("/AuditEvent?{query}"), Some(token));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    of_type(&r.json(), "AuditEvent")
        .into_iter()
        .cloned()
        .collect()
}

fn patient_of(event: &Value) -> Option<String> {
    event["entity"].as_array().unwrap().iter().find_map(|e| {
        e["what"]["reference"]
            .as_str()
            .map(|r| r.trim_start_matches("Patient/").to_owned())
    })
}

#[test]
fn r_aud_1_every_access_and_every_refusal_is_audited_with_the_rule() {
    for s in servers() {
        let user = unique_user("aud1");
        let t = staff_as(s, &user, "M85001", "R8000", "user/*.rs");
        assert_eq!(
            s.get(&format!("/Patient/{JANE}/$everything"), Some(&t))
                .status,
            200
        );
        assert_eq!(s.get(&format!("/Patient/{LINDA}"), Some(&t)).status, 403);
        let found = events(s, &format!("agent={user}"), &privacy_officer(s));
        assert_eq!(found.len(), 2, "{found:#?}");
        let refusal = found
            .iter()
            .find(|e| e["outcome"] == "4")
            .expect("the refusal");
        assert_eq!(patient_of(refusal).as_deref(), Some(LINDA));
        assert!(refusal["outcomeDesc"].as_str().unwrap().contains("R-LR-5"));
        let access = found
            .iter()
            .find(|e| e["outcome"] == "0")
            .expect("the access");
        assert_eq!(patient_of(access).as_deref(), Some(JANE));
        assert_eq!(access["subtype"][0]["code"], "operation");
        assert!(
            access["agent"].to_string().contains("M85001"),
            "the organisation is an agent"
        );
    }
}

#[test]
fn r_aud_1_a_token_refusal_is_audited_too() {
    for s in servers() {
        let po = privacy_officer(s);
        let total = || {
            s.get("/AuditEvent?agent=unauthenticated&_count=1", Some(&po))
                .json()["total"]
                .as_u64()
                .unwrap()
        };
        let before = total();
        assert_eq!(s.get(&format!("/Patient/{JANE}"), None).status, 401);
        assert!(total() > before);
    }
}

#[test]
fn r_aud_4_privacy_officers_search_and_nobody_else_does() {
    for s in servers() {
        let r = s.get("/AuditEvent?outcome=4", Some(&clinician(s, "M85001")));
        assert_eq!((r.status, r.issue_code().as_str()), (403, "forbidden"));
        let refused = events(s, "outcome=4&_count=5", &privacy_officer(s));
        assert!(refused.iter().all(|e| e["outcome"] == "4"));
        let bad = s.get("/AuditEvent?colour=blue", Some(&privacy_officer(s)));
        assert_eq!(
            (bad.status, bad.issue_code().as_str()),
            (400, "not-supported")
        );
    }
}

#[test]
fn r_aud_5_a_patient_sees_who_accessed_their_record_by_organisation_and_role() {
    for s in servers() {
        let user = unique_user("aud5");
        let t = staff_as(s, &user, "RXK", "R8000", "user/*.rs");
        assert_eq!(
            s.get(&format!("/Patient/{JANE}/$everything"), Some(&t))
                .status,
            200
        );
        let own = patient(s, JANE, "P9");
        let r = s.get("/AuditEvent?_count=500", Some(&own));
        assert_eq!(r.status, 200);
        let body = String::from_utf8_lossy(&r.body).into_owned();
        assert!(
            body.contains("RXK") && body.contains("R8000"),
            "organisation and role are shown"
        );
        assert!(
            !body.contains(&user),
            "the staff member's own identifier is not"
        );
        let all: Vec<Value> = of_type(&r.json(), "AuditEvent")
            .into_iter()
            .cloned()
            .collect();
        assert!(
            all.iter().all(|e| patient_of(e).as_deref() == Some(JANE)),
            "only events about the patient"
        );
        let other = s.get(&format!("/AuditEvent?patient={KHAN}"), Some(&own));
        assert_eq!(
            (other.status, other.issue_code().as_str()),
            (403, "forbidden")
        );
    }
}

fn verify(s: &Server) -> (bool, String) {
    let out = Command::new(BIN)
        .args([
            "audit",
            "verify",
            "--config",
            s.dir.join("scr.toml").to_str().unwrap(),
        ])
        .env("SCR_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn r_aud_3_audit_verify_passes_then_names_a_record_altered_by_hand() {
    for s in servers() {
        assert_eq!(
            s.get(&format!("/Patient/{JANE}"), Some(&clinician(s, "M85001")))
                .status,
            200
        );
        let (ok, out) = verify(s);
        assert!(ok && out.contains("audit chain intact"), "{out}");
        let mut conn = store_connection(s);
        let original: String = diesel::sql_query("SELECT resource FROM audit_event WHERE seq = 1")
            .get_result::<Resource>(&mut conn)
            .unwrap()
            .resource;
        diesel::sql_query(
            "UPDATE audit_event SET resource = REPLACE(resource, 'TREAT', 'XXXXX') WHERE seq = 1",
        )
        .execute(&mut conn)
        .unwrap();
        let (ok, out) = verify(s);
        assert!(!ok && out.contains("broken at record 1"), "{out}");
        // Put it back so the shared server's trail stays whole for the other tests.
        diesel::sql_query(
            "UPDATE audit_event SET resource = $1 WHERE seq = 1"
                .replace("$1", &format!("'{}'", original.replace('\'', "''"))),
        )
        .execute(&mut conn)
        .unwrap();
        assert!(verify(s).0);
    }
}

#[derive(QueryableByName)]
struct Resource {
    #[diesel(sql_type = diesel::sql_types::Text)]
    resource: String,
}

#[test]
fn r_aud_2_no_audit_no_data() {
    let s = Server::sqlite_named("audit-down", 0);
    let t = clinician(&s, "M85001");
    assert_eq!(s.get(&format!("/Patient/{JANE}"), Some(&t)).status, 200);
    let mut conn = store_connection(&s);
    diesel::sql_query("ALTER TABLE audit_event RENAME TO audit_event_away")
        .execute(&mut conn)
        .unwrap();
    let r = s.get(&format!("/Patient/{JANE}"), Some(&t));
    assert_eq!((r.status, r.issue_code().as_str()), (503, "transient"));
    assert!(r.header("Retry-After").is_some());
    assert!(
        !String::from_utf8_lossy(&r.body).contains("Smith"),
        "no patient data without its audit record"
    );
    diesel::sql_query("ALTER TABLE audit_event_away RENAME TO audit_event")
        .execute(&mut conn)
        .unwrap();
    assert_eq!(s.get(&format!("/Patient/{JANE}"), Some(&t)).status, 200);
}

fn scr_audit(s: &Server, args: &[&str]) -> String {
    let config = s.dir.join("scr.toml");
    let mut all = vec!["audit"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--config", config.to_str().unwrap()]);
    let out = Command::new(BIN)
        .args(&all)
        .env("SCR_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn r_aud_4_break_glass_claims_await_review_until_a_privacy_officer_reviews_them() {
    for s in servers() {
        let user = unique_user("bg-review");
        let crew = staff_as(s, &user, "RYA", "R8000", "user/*.rs");
        let body = serde_json::json!({"resourceType": "Parameters", "parameter": [
            {"name": "purpose", "valueCode": "BTG"}, {"name": "reason", "valueString": "Review test: patient collapsed"}]});
        let auth = format!("Bearer {crew}");
        let r = s.request(
            "POST",
            "/Patient/9990000042/$break-glass",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/fhir+json"),
            ],
            body.to_string().as_bytes(),
        );
        assert_eq!(r.status, 200);
        let pending = scr_audit(s, &["break-glass", "--pending"]);
        let line = pending
            .lines()
            .find(|l| l.contains(&user))
            .unwrap_or_else(|| panic!("{pending}"));
        assert!(line.contains("pending") && line.contains("Review test"));
        let id = line.split_whitespace().next().unwrap().to_owned();
        assert!(scr_audit(s, &["review", &id]).contains("reviewed"));
        assert!(!scr_audit(s, &["break-glass", "--pending"]).contains(&user));
        assert!(
            scr_audit(s, &["break-glass"]).contains(&user),
            "reviewed claims stay listed"
        );
    }
}
