//! The information sharing agreement (`access-rules.md`), rule by rule, through the real server.
//! Each test names the rule it checks and asserts the status, the issue code and what is returned.

use serde_json::Value;

use crate::harness::*;

const JANE: &str = "9990000018";
const KHAN: &str = "9990000026";
const AMELIA: &str = "9990000034";
const LINDA: &str = "9990000069";
const OLIVER: &str = "9990000077";

fn refused(s: &Server, path: &str, token: &str) -> String {
    let r = s.get(path, Some(token));
    assert_eq!(
        (r.status, r.issue_code().as_str()),
        (403, "forbidden"),
        "{path}"
    );
    r.json()["issue"][0]["diagnostics"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn everything(s: &Server, nhs: &str, token: &str) -> Value {
    let r = s.get(&format!("/Patient/{nhs}/$everything"), Some(token));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

#[test]
fn r_lr_1_current_registration_opens_the_record_a_past_one_does_not() {
    for s in servers() {
        assert_eq!(
            s.get(&format!("/Patient/{JANE}"), Some(&clinician(s, "M85001")))
                .status,
            200
        );
        assert_eq!(
            s.get(&format!("/Patient/{LINDA}"), Some(&clinician(s, "M85002")))
                .status,
            200
        );
        refused(s, &format!("/Patient/{LINDA}"), &clinician(s, "M85003"));
    }
}

#[test]
fn r_lr_2_a_visit_ended_within_the_window_opens_the_record() {
    for s in servers() {
        // Jane was discharged from RXK 15 days ago (window: 90 days).
        assert_eq!(
            s.get(
                &format!("/Patient/{JANE}/$everything"),
                Some(&clinician(s, "RXK"))
            )
            .status,
            200
        );
        refused(
            s,
            &format!("/Patient/{JANE}/$everything"),
            &clinician(s, "RNA"),
        );
    }
}

#[test]
fn r_lr_3_allocation_to_the_worker_or_their_team() {
    for s in servers() {
        let alex = staff_as(s, "sw-dud-0001", "LA-DUD", "R8014", "user/*.rs");
        let chris = staff_as(s, "sw-dud-0002", "LA-DUD", "R8014", "user/*.rs");
        assert_eq!(
            s.get(&format!("/Flag?patient={JANE}"), Some(&alex)).status,
            200,
            "allocated to Alex"
        );
        refused(s, &format!("/Flag?patient={JANE}"), &chris);
        assert_eq!(
            s.get(&format!("/Flag?patient={AMELIA}"), Some(&chris))
                .status,
            200,
            "allocated to Chris's team"
        );
        refused(s, &format!("/Flag?patient={OLIVER}"), &alex); // allocation ended 30 days ago
    }
}

#[test]
fn r_lr_5_no_relationship_is_a_refusal_that_says_how_to_self_claim() {
    for s in servers() {
        let crew = clinician(s, "RYA");
        for path in [
            format!("/Patient/{JANE}"),
            format!("/Patient/{JANE}/$everything"),
            format!("/Observation?patient={JANE}"),
            format!("/Observation?patient={JANE}&_summary=count"),
        ] {
            let why = refused(s, &path, &crew);
            assert!(
                why.contains("R-LR-5") && why.contains("self-claim"),
                "{why}"
            );
        }
        let search = s.get(
            &format!("/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{JANE}"),
            Some(&crew),
        );
        assert_eq!(search.status, 403, "never an empty but successful result");
        let admin = staff(s, "RYA", "R8008", "user/*.rs");
        assert!(refused(s, &format!("/Patient/{JANE}"), &admin).contains("cannot self-claim"));
    }
}

#[test]
fn r_lr_5_a_record_of_a_patient_the_caller_cannot_open_reads_as_not_found() {
    for s in servers() {
        let all = s
            .all_pages(
                &format!("/Observation?patient={JANE}"),
                &clinician(s, "M85001"),
            )
            .0;
        let id = all[0]["id"].as_str().unwrap();
        let r = s.get(&format!("/Observation/{id}"), Some(&clinician(s, "RYA")));
        assert_eq!((r.status, r.issue_code().as_str()), (404, "not-found"));
    }
}

#[test]
fn r_obj_2_objection_shows_only_own_org_data() {
    for s in servers() {
        let gp = everything(s, KHAN, &clinician(s, "M85001"));
        assert_eq!(holders(&gp), ["M85001"]);
        assert!(!of_type(&gp, "Observation").is_empty());
        let trust = everything(s, KHAN, &clinician(s, "RXK"));
        assert_eq!(
            holders(&trust),
            ["RXK"],
            "demographics too come from the caller's own source"
        );
        let count = s
            .get(
                &format!("/Observation?patient={KHAN}&_summary=count"),
                Some(&clinician(s, "RXK")),
            )
            .json();
        assert_eq!(
            count["total"].as_u64(),
            Some(of_type(&trust, "Observation").len() as u64)
        );
    }
}

#[test]
fn r_obj_3_the_response_says_an_objection_limits_it() {
    for s in servers() {
        let b = everything(s, KHAN, &clinician(s, "M85001"));
        assert!(warnings(&b).contains("R-OBJ-3"), "{}", warnings(&b));
        let none = everything(s, JANE, &clinician(s, "M85001"));
        assert!(!warnings(&none).contains("R-OBJ-3"));
    }
}

#[test]
fn r_obj_4_a_parents_objection_for_a_child_has_the_same_effect() {
    for s in servers() {
        let gp = everything(s, AMELIA, &clinician(s, "M85002"));
        assert_eq!(holders(&gp), ["M85002"]);
        let chris = staff_as(s, "sw-dud-0002", "LA-DUD", "R8014", "user/*.rs");
        let council = everything(s, AMELIA, &chris);
        assert_eq!(holders(&council), ["LA-DUD"]);
        assert!(warnings(&council).contains("R-OBJ-3"));
    }
}

#[test]
fn r_obj_6_the_patient_sees_their_whole_record_and_the_objection() {
    for s in servers() {
        let own = everything(s, KHAN, &patient(s, KHAN, "P9"));
        let h = holders(&own);
        assert!(
            h.contains(&"M85001".to_string()) && h.contains(&"RXK".to_string()),
            "{h:?}"
        );
        assert!(warnings(&own).contains("R-OBJ-6"));
    }
}

fn claim(s: &Server, nhs: &str, token: &str, purpose: &str, reason: &str) -> Response {
    let body = serde_json::json!({
        "resourceType": "Parameters",
        "parameter": [{ "name": "purpose", "valueCode": purpose }, { "name": "reason", "valueString": reason }],
    });
    let auth = format!("Bearer {token}");
    s.request(
        "POST",
        &format!("/Patient/{nhs}/$break-glass"),
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/fhir+json"),
        ],
        body.to_string().as_bytes(),
    )
}

#[test]
fn r_lr_4_a_clinician_self_claims_a_relationship_which_is_audited_as_break_glass() {
    for s in servers() {
        let user = format!("crew-{}-{}", std::process::id(), now());
        let crew = staff_as(s, &user, "RYA", "R8000", "user/*.rs");
        refused(s, &format!("/Patient/{JANE}/$everything"), &crew);
        let r = claim(
            s,
            JANE,
            &crew,
            "ETREAT",
            "Unconscious at roadside, need allergies",
        );
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.issue_code(), "informational");
        assert_eq!(
            s.get(&format!("/Patient/{JANE}/$everything"), Some(&crew))
                .status,
            200
        );
        // Only for that patient.
        refused(s, &format!("/Patient/{KHAN}"), &crew);

        let po = staff_as(s, "po-0001", "M85001", "R0001", "user/AuditEvent.rs");
        let review = s
            .get(
                &format!("/AuditEvent?break-glass=true&agent={user}"),
                Some(&po),
            )
            .json();
        let events = of_type(&review, "AuditEvent");
        assert_eq!(events.len(), 2, "the claim and the access under it");
        assert!(events
            .iter()
            .all(|e| e["purposeOfEvent"][0]["coding"][0]["code"] == "ETREAT"));
        // R-AUD-4: the privacy officer's review carries the written reason, in both events.
        assert!(
            events.iter().all(|e| e["entity"][0]["detail"]
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d["type"] == "break-glass-reason"
                    && d["valueString"] == "Unconscious at roadside, need allergies")),
            "{review}"
        );
        let mine = s.get("/AuditEvent?_count=500", Some(&patient(s, JANE, "P9")));
        let mine = String::from_utf8_lossy(&mine.body);
        assert!(
            mine.contains("ETREAT"),
            "the patient sees the break-glass access"
        );
        assert!(
            !mine.contains("Unconscious at roadside"),
            "the reason is written for the privacy officer, not shown in the patient's log"
        );
    }
}

#[test]
fn r_lr_4_only_clinical_profiles_may_self_claim_and_the_claim_is_validated() {
    for s in servers() {
        let admin = staff(s, "RYA", "R8008", "user/*.rs");
        let r = claim(s, JANE, &admin, "ETREAT", "Need to see the record please");
        assert_eq!((r.status, r.issue_code().as_str()), (403, "forbidden"));
        let social = staff_as(s, "sw-dud-0002", "LA-DUD", "R8014", "user/*.rs");
        assert_eq!(
            claim(s, JANE, &social, "BTG", "Need to see the record please").status,
            403
        );
        let crew = clinician(s, "RYA");
        let no_reason = claim(s, JANE, &crew, "ETREAT", "");
        assert_eq!(
            (no_reason.status, no_reason.issue_code().as_str()),
            (400, "invalid")
        );
        assert!(no_reason.json()["issue"][0]["expression"][0]
            .as_str()
            .unwrap()
            .contains("reason"));
        let bad_purpose = claim(s, JANE, &crew, "CURIOUS", "Need to see the record please");
        assert_eq!(bad_purpose.status, 400);
        assert_eq!(
            claim(
                s,
                "9990000085",
                &crew,
                "BTG",
                "Need to see the record please"
            )
            .status,
            404
        );
        let auth = format!("Bearer {crew}");
        let xml = s.request(
            "POST",
            &format!("/Patient/{JANE}/$break-glass"),
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/xml"),
            ],
            b"<x/>",
        );
        assert_eq!(xml.status, 415);
    }
}

/// (NHS number, practice) of synthetic patients, per server.
type Candidates = Vec<(String, String)>;

/// A random synthetic patient registered at a practice, with records from some other
/// organisation and no objection: tests that change objections or write alerts each use one
/// of their own. The list is made once per server, before any test has changed anything
/// (every such test asks for its patient first), so indices never shift under a running test.
fn patient_for_objection_tests(s: &Server, skip: usize) -> (String, String) {
    static LISTS: std::sync::Mutex<Vec<(String, Candidates)>> = std::sync::Mutex::new(Vec::new());
    let mut lists = LISTS.lock().unwrap();
    if !lists.iter().any(|(base, _)| base == &s.base) {
        let any = system(s, "ZZZ", "system/*.rs");
        let mut found = Vec::new();
        for stem in 999_100_000u64..999_100_400 {
            let Some(nhs) = scr_fhir::nhs_number::with_check_digit(&stem.to_string()) else {
                continue;
            };
            let r = s.get(&format!("/Patient/{nhs}/$everything"), Some(&any));
            if r.status != 200 {
                continue;
            }
            let b = r.json();
            let h = holders(&b);
            if let Some(practice) = h
                .iter()
                .find(|o| o.starts_with("M85"))
                .cloned()
                .filter(|_| h.len() > 1 && !warnings(&b).contains("R-OBJ-3"))
            {
                found.push((nhs, practice));
            }
            if found.len() == 8 {
                break;
            }
        }
        lists.push((s.base.clone(), found));
    }
    let list = &lists.iter().find(|(base, _)| base == &s.base).unwrap().1;
    list.get(skip)
        .cloned()
        .unwrap_or_else(|| panic!("no synthetic patient number {skip}"))
}

fn consent(nhs: &str, provision: &str) -> Value {
    serde_json::json!({
        "resourceType": "Consent",
        "status": "active",
        "scope": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy" }] },
        "category": [{ "coding": [{ "system": "http://loinc.org", "code": "59284-0" }] }],
        "patient": { "reference": format!("Patient/{nhs}") },
        "policyRule": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT" }] },
        "provision": { "type": provision },
    })
}

fn post_consent(s: &Server, token: &str, body: &Value) -> Response {
    let auth = format!("Bearer {token}");
    s.request(
        "POST",
        "/Consent",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/fhir+json"),
        ],
        body.to_string().as_bytes(),
    )
}

#[test]
fn r_obj_1_and_r_obj_5_an_objection_registered_here_then_withdrawn_takes_effect_at_once() {
    for s in servers() {
        let (nhs, practice) = patient_for_objection_tests(s, 0);
        let receptionist = staff(s, &practice, "R8008", "user/*.rs user/Consent.c");
        let elsewhere = system(s, "RXK", "system/*.rs");
        let outside = |s: &Server| {
            holders(&everything(s, &nhs, &elsewhere))
                .into_iter()
                .filter(|o| o != "RXK")
                .count()
        };
        assert!(outside(s) > 0, "shared before the objection");

        let r = post_consent(s, &receptionist, &consent(&nhs, "deny"));
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        assert!(r
            .header("Location")
            .is_some_and(|l| l.contains("/Consent/")));
        let after = everything(s, &nhs, &elsewhere);
        assert_eq!(
            holders(&after).into_iter().filter(|o| o != "RXK").count(),
            0,
            "R-OBJ-2 at once"
        );
        assert!(warnings(&after).contains("R-OBJ-3"));

        assert_eq!(
            post_consent(s, &receptionist, &consent(&nhs, "permit")).status,
            201
        );
        assert!(
            outside(s) > 0,
            "R-OBJ-5: withdrawal restores sharing at once"
        );

        let po = staff_as(
            s,
            "po-0001",
            "M85001",
            "R0001",
            "user/AuditEvent.rs user/Consent.rs",
        );
        let listed = s.get(&format!("/Consent?patient={nhs}"), Some(&po)).json();
        let statements = of_type(&listed, "Consent");
        assert_eq!(statements.len(), 2);
        assert_eq!(statements[0]["provision"]["type"], "permit", "newest first");
        let own = s.get("/Consent", Some(&patient(s, &nhs, "P9")));
        assert_eq!(own.status, 200);
        assert_eq!(
            own.json()["total"],
            2,
            "R-OBJ-6: the patient sees their statements"
        );
    }
}

#[test]
fn r_obj_1_only_the_registered_practice_registers_an_objection_and_bad_statements_are_named() {
    for s in servers() {
        let (nhs, practice) = patient_for_objection_tests(s, 1);
        let trust = staff(s, "RXK", "R8000", "user/*.rs user/Consent.c");
        let r = post_consent(s, &trust, &consent(&nhs, "deny"));
        assert_eq!((r.status, r.issue_code().as_str()), (403, "forbidden"));
        assert!(r.json()["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("R-OBJ-1"));
        let crew = staff(s, "RYA", "R8000", "user/*.rs user/Consent.c");
        assert!(
            post_consent(s, &crew, &consent(&nhs, "deny")).json()["issue"][0]["diagnostics"]
                .as_str()
                .unwrap()
                .contains("R-ROLE-2")
        );
        let no_scope = staff(s, &practice, "R8000", "user/*.rs");
        assert_eq!(
            post_consent(s, &no_scope, &consent(&nhs, "deny")).status,
            403
        );

        let gp = staff(s, &practice, "R8000", "user/*.rs user/Consent.c");
        let bad = post_consent(s, &gp, &consent(&nhs, "maybe"));
        assert_eq!((bad.status, bad.issue_code().as_str()), (400, "invalid"));
        assert_eq!(
            bad.json()["issue"][0]["expression"][0],
            "Consent.provision.type"
        );
        let mut unknown = consent(&nhs, "deny");
        unknown["colour"] = "blue".into();
        let bad = post_consent(s, &gp, &unknown);
        assert_eq!(bad.json()["issue"][0]["expression"][0], "colour");
        // Nothing was half-written: the patient is still shared.
        assert!(
            !warnings(&everything(s, &nhs, &system(s, "RXK", "system/*.rs"))).contains("R-OBJ-3")
        );
    }
}

#[test]
fn r_role_2_view_only_organisations_never_write() {
    for s in servers() {
        let (nhs, _) = patient_for_objection_tests(s, 2);
        let crew = staff(s, "RYA", "R8000", "user/*.rs user/Consent.c");
        let r = post_consent(s, &crew, &consent(&nhs, "deny"));
        assert_eq!((r.status, r.issue_code().as_str()), (403, "forbidden"));
        assert!(r.json()["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("R-ROLE-2"));
    }
}

fn alert(nhs: &str, category: &str, text: &str) -> Value {
    let display = category.replace('-', " ");
    serde_json::json!({
        "resourceType": "Flag",
        "status": "active",
        "category": [{ "coding": [{ "system": "https://scr.example.nhs.uk/CodeSystem/alert-category", "code": category, "display": display }] }],
        "code": { "text": text },
        "subject": { "reference": format!("Patient/{nhs}") },
        "period": { "start": "2026-11-25" },
    })
}

fn write(
    s: &Server,
    method: &str,
    path: &str,
    token: &str,
    body: &Value,
    if_match: Option<&str>,
) -> Response {
    let auth = format!("Bearer {token}");
    let mut headers = vec![
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/fhir+json"),
    ];
    if let Some(v) = if_match {
        headers.push(("If-Match", v));
    }
    s.request(method, path, &headers, body.to_string().as_bytes())
}

#[test]
fn r_write_1_a_clinicians_alert_opens_the_record_first_for_everyone_allowed_and_no_one_else() {
    for s in servers() {
        let (nhs, practice) = patient_for_objection_tests(s, 3);
        let gp = staff(s, &practice, "R8000", "user/*.rs user/Flag.cu");
        let r = write(
            s,
            "POST",
            "/Flag",
            &gp,
            &alert(&nhs, "safeguarding", "Lives with a person who poses a risk"),
            None,
        );
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.header("ETag"), Some("W/\"1\""));
        let id = r.json()["id"].as_str().unwrap().to_owned();
        for reader in [
            clinician(s, &practice),
            system(s, "RXK", "system/*.rs"),
            patient(s, &nhs, "P9"),
        ] {
            let b = everything(s, &nhs, &reader);
            assert_eq!(
                b["entry"][1]["resource"]["id"],
                id.as_str(),
                "the new safeguarding alert comes right after the Patient"
            );
        }
        assert_eq!(
            s.get(&format!("/Flag/{id}"), Some(&clinician(s, "RNA")))
                .status,
            404,
            "not for a caller without a relationship"
        );
        let crew = staff(s, "RYA", "R8000", "user/*.rs user/Flag.cu");
        let r = write(s, "POST", "/Flag", &crew, &alert(&nhs, "other", "x"), None);
        assert!(r.json()["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("R-ROLE-2"));
        let no_scope = staff(s, &practice, "R8000", "user/*.rs");
        assert_eq!(
            write(
                s,
                "POST",
                "/Flag",
                &no_scope,
                &alert(&nhs, "other", "x"),
                None
            )
            .status,
            403
        );
    }
}

#[test]
fn r_write_2_and_3_a_patients_wish_is_versioned_and_professional_alerts_are_theirs_alone() {
    for s in servers() {
        let (nhs, practice) = patient_for_objection_tests(s, 4);
        let me = {
            let t = scr_auth::dev::PatientToken {
                audience: s.base.clone(),
                nhs_number: nhs.clone(),
                proofing_level: "P9".into(),
                scope: "patient/*.rs patient/Flag.cu".into(),
                lifetime_seconds: 600,
            };
            scr_auth::dev::sign_rs256(
                &scr_auth::dev::patient_claims(&t, now()),
                scr_auth::dev::dev_private_key_pem(),
                scr_auth::dev::DEV_KID,
            )
            .unwrap()
        };
        let wish = write(
            s,
            "POST",
            "/Flag",
            &me,
            &alert(&nhs, "end-of-life-wishes", "Preferred place of death: home"),
            None,
        );
        assert_eq!(wish.status, 201, "{}", String::from_utf8_lossy(&wish.body));
        let id = wish.json()["id"].as_str().unwrap().to_owned();
        assert_eq!(
            write(
                s,
                "POST",
                "/Flag",
                &me,
                &alert(&nhs, "safeguarding", "x"),
                None
            )
            .status,
            403,
            "patients write wishes and needs only"
        );

        let path = format!("/Flag/{id}");
        let mut changed = alert(
            &nhs,
            "end-of-life-wishes",
            "Preferred place of death: hospice",
        );
        changed["id"] = id.clone().into();
        assert_eq!(
            write(s, "PUT", &path, &me, &changed, None).status,
            428,
            "an update needs If-Match"
        );
        let v2 = write(s, "PUT", &path, &me, &changed, Some("W/\"1\""));
        assert_eq!((v2.status, v2.header("ETag")), (200, Some("W/\"2\"")));
        let stale = write(s, "PUT", &path, &me, &changed, Some("W/\"1\""));
        assert_eq!(
            (stale.status, stale.issue_code().as_str()),
            (412, "conflict"),
            "the second writer of version 1 loses and nothing is stored"
        );
        assert_eq!(
            s.get(&path, Some(&me)).header("ETag"),
            Some("W/\"2\""),
            "a read gives the version to send back"
        );
        let history = s.get(&format!("{path}/_history"), Some(&me)).json();
        assert_eq!(history["type"], "history");
        assert_eq!(
            history["entry"].as_array().unwrap().len(),
            2,
            "every version kept"
        );
        let v1 = s.get(&format!("{path}/_history/1"), Some(&me)).json();
        assert_eq!(v1["code"]["text"], "Preferred place of death: home");
        let mut ended = changed.clone();
        ended["status"] = "inactive".into();
        ended["period"]["end"] = "2026-11-26".into();
        assert_eq!(
            write(s, "PUT", &path, &me, &ended, Some("W/\"2\"")).status,
            200,
            "ended by the patient who set it"
        );

        let gp = staff(s, &practice, "R8000", "user/*.rs user/Flag.cu");
        let professional = write(
            s,
            "POST",
            "/Flag",
            &gp,
            &alert(
                &nhs,
                "communication-support",
                "Hard of hearing: face the patient",
            ),
            None,
        )
        .json();
        let pid = professional["id"].as_str().unwrap().to_owned();
        let mut mine = alert(&nhs, "communication-support", "I hear fine");
        mine["id"] = pid.clone().into();
        let r = write(
            s,
            "PUT",
            &format!("/Flag/{pid}"),
            &me,
            &mine,
            Some("W/\"1\""),
        );
        assert_eq!(
            (r.status, r.issue_code().as_str()),
            (403, "forbidden"),
            "R-WRITE-2"
        );
    }
}

#[test]
fn r_write_4_an_invalid_alert_is_refused_naming_the_element_and_nothing_is_stored() {
    for s in servers() {
        let (nhs, practice) = patient_for_objection_tests(s, 5);
        let gp = staff(s, &practice, "R8000", "user/*.rs user/Flag.cu");
        let before = s
            .get(&format!("/Flag?patient={nhs}&_summary=count"), Some(&gp))
            .json()["total"]
            .clone();
        let mut bad = alert(&nhs, "safeguarding", "x");
        bad["category"] = serde_json::json!([{ "text": "urgent" }]);
        let r = write(s, "POST", "/Flag", &gp, &bad, None);
        assert_eq!((r.status, r.issue_code().as_str()), (400, "invalid"));
        assert_eq!(r.json()["issue"][0]["expression"][0], "Flag.category");
        let mut unknown = alert(&nhs, "safeguarding", "x");
        unknown["colour"] = "red".into();
        assert_eq!(
            write(s, "POST", "/Flag", &gp, &unknown, None).json()["issue"][0]["expression"][0],
            "colour"
        );
        assert_eq!(
            s.get(&format!("/Flag?patient={nhs}&_summary=count"), Some(&gp))
                .json()["total"],
            before
        );
        assert_eq!(
            write(s, "POST", "/Observation", &gp, &bad, None).status,
            405,
            "only alerts are written"
        );
    }
}

#[test]
fn item7_r_obj_1_a_statement_dated_ahead_is_refused_and_offsets_order_statements() {
    for s in servers() {
        let (nhs, practice) = patient_for_objection_tests(s, 6);
        let gp = staff(s, &practice, "R8000", "user/*.rs user/Consent.c");
        let elsewhere = system(s, "RXK", "system/*.rs");
        let shared = |s: &Server| {
            holders(&everything(s, &nhs, &elsewhere))
                .into_iter()
                .any(|o| o != "RXK")
        };
        // A permit dated 2099 would beat every later objection.
        let mut ahead = consent(&nhs, "permit");
        ahead["dateTime"] = "2099-01-01T00:00:00Z".into();
        let r = post_consent(s, &gp, &ahead);
        assert_eq!((r.status, r.issue_code().as_str()), (400, "invalid"));
        assert_eq!(r.json()["issue"][0]["expression"][0], "Consent.dateTime");
        // A time without a zone cannot be ordered.
        let mut zoneless = consent(&nhs, "deny");
        zoneless["dateTime"] = "2026-01-01T10:00:00".into();
        assert_eq!(post_consent(s, &gp, &zoneless).status, 400);

        // An objection at 09:30 in UTC+02:00 (07:30Z) and a withdrawal at 08:00Z: as text the
        // objection looks later ("09:30" > "08:00"); as instants the withdrawal is.
        let mut objection = consent(&nhs, "deny");
        objection["dateTime"] = "2026-06-01T09:30:00+02:00".into();
        assert_eq!(post_consent(s, &gp, &objection).status, 201);
        assert!(!shared(s), "R-OBJ-2 while the objection stands");
        let mut withdrawal = consent(&nhs, "permit");
        withdrawal["dateTime"] = "2026-06-01T08:00:00Z".into();
        assert_eq!(post_consent(s, &gp, &withdrawal).status, 201);
        assert!(shared(s), "the withdrawal is the later statement");
    }
}

#[test]
fn item2_r_write_1_social_care_writes_other_alerts_but_never_changes_a_clinicians() {
    for s in own_servers("sw-alerts", |c| c) {
        let alex = staff_as(
            &s,
            "sw-dud-0001",
            "LA-DUD",
            "R8014",
            "user/*.rs user/Flag.cu",
        );
        // social-care.md: `other` is one of the council's own alert categories.
        let r = write(
            &s,
            "POST",
            "/Flag",
            &alex,
            &alert(JANE, "other", "Dog in the house"),
            None,
        );
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        // A safeguarding alert (a social care category) written by Jane's GP.
        let gp = staff(&s, "M85001", "R8000", "user/*.rs user/Flag.cu");
        let r = write(
            &s,
            "POST",
            "/Flag",
            &gp,
            &alert(JANE, "safeguarding", "Concern raised at surgery"),
            None,
        );
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        let location = r.header("Location").unwrap().to_owned();
        let id = location
            .split("/Flag/")
            .nth(1)
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        let etag = r.header("ETag").unwrap().to_owned();
        // The social worker may not end it, nor rewrite it, though the category is theirs.
        let mut ended = alert(JANE, "safeguarding", "Concern raised at surgery");
        ended["id"] = id.clone().into();
        ended["status"] = "inactive".into();
        ended["period"]["end"] = "2026-11-26".into();
        let r = write(
            &s,
            "PUT",
            &format!("/Flag/{id}"),
            &alex,
            &ended,
            Some(&etag),
        );
        assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));
        assert!(r.json().to_string().contains("R-WRITE-1"));
        let still = s.get(&format!("/Flag/{id}"), Some(&gp)).json();
        assert_eq!(still["status"], "active");
    }
}

#[test]
fn item8_r_role_2_a_backend_service_of_a_view_only_organisation_never_writes() {
    for s in servers() {
        let crew_system = system(s, "RYA", "system/*.rs system/Flag.cu");
        let r = write(
            s,
            "POST",
            "/Flag",
            &crew_system,
            &alert(JANE, "other", "Key safe at the back door"),
            None,
        );
        assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));
        assert!(r.json().to_string().contains("R-ROLE-2"));
    }
}

#[test]
fn item8_r_lr_3_an_allocation_stays_with_the_council_not_the_person_in_another_role() {
    for s in servers() {
        // Chris is allocated Amelia through the council's team. The same person, signed in
        // under a clinical role at a trust, has no relationship there.
        let chris_council = staff_as(s, "sw-dud-0002", "LA-DUD", "R8014", "user/*.rs");
        assert_eq!(
            s.get(&format!("/Flag?patient={AMELIA}"), Some(&chris_council))
                .status,
            200
        );
        let chris_at_trust = staff_as(s, "sw-dud-0002", "RNA", "R8000", "user/*.rs");
        refused(
            s,
            &format!("/Patient/{AMELIA}/$everything"),
            &chris_at_trust,
        );
    }
}
