//! `POST Patient/{id}/$explain` and `scr policy explain` (R-AUD-4): why a described caller sees
//! what they see, for every rule family, with the facts each rule used and per resource type
//! what is shown and withheld under which rule. Never clinical content.

use std::process::Command;

use serde_json::{json, Value};

use crate::harness::*;

const JANE: &str = "9990000018";
const KHAN: &str = "9990000026";
const SAM: &str = "9990000042";
const PETER: &str = "9990000050";

fn officer(s: &Server) -> String {
    staff(s, "M85001", "R0001", "user/AuditEvent.rs")
}

fn body(params: &[(&str, &str)]) -> Vec<u8> {
    let p: Vec<Value> = params
        .iter()
        .map(|(n, v)| json!({"name": n, "valueString": v}))
        .collect();
    json!({"resourceType": "Parameters", "parameter": p})
        .to_string()
        .into_bytes()
}

pub fn explain(s: &Server, token: &str, nhs: &str, params: &[(&str, &str)]) -> Response {
    let auth = format!("Bearer {token}");
    s.request(
        "POST",
        &format!("/Patient/{nhs}/$explain"),
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/fhir+json"),
        ],
        &body(params),
    )
}

/// The first value of a top-level parameter.
pub fn param<'a>(p: &'a Value, name: &str) -> Option<&'a str> {
    p["parameter"]
        .as_array()?
        .iter()
        .find(|x| x["name"] == name)
        .and_then(|x| x["valueCode"].as_str().or(x["valueString"].as_str()))
}

/// (rule, result, detail and facts) of every evaluation.
pub fn evaluations(p: &Value) -> Vec<(String, String, String)> {
    p["parameter"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|x| x["name"] == "evaluation")
        .map(|x| {
            let part = |n: &str| -> String {
                x["part"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|y| y["name"] == n)
                    .filter_map(|y| y["valueCode"].as_str().or(y["valueString"].as_str()))
                    .collect::<Vec<_>>()
                    .join(" | ")
            };
            (
                part("rule"),
                part("result"),
                format!("{} | {}", part("detail"), part("fact")),
            )
        })
        .collect()
}

/// Records withheld of `resource_type` under `rule`.
pub fn withheld(p: &Value, resource_type: &str, rule: &str) -> i64 {
    p["parameter"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|x| x["name"] == "count")
        .filter(|x| x["part"][0]["valueCode"] == resource_type)
        .flat_map(|x| x["part"].as_array().unwrap().iter())
        .filter(|y| y["name"] == "withheld" && y["part"][0]["valueCode"] == rule)
        .map(|y| y["part"][1]["valueInteger"].as_i64().unwrap())
        .sum()
}

fn shown(p: &Value, resource_type: &str) -> i64 {
    p["parameter"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|x| x["name"] == "count" && x["part"][0]["valueCode"] == resource_type)
        .map(|x| x["part"][1]["valueInteger"].as_i64().unwrap())
        .sum()
}

fn ok(s: &Server, nhs: &str, params: &[(&str, &str)]) -> Value {
    let r = explain(s, &officer(s), nhs, params);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let p = r.json();
    assert_eq!(p["resourceType"], "Parameters");
    // Never clinical content: no names, no codes, no displays of what is withheld.
    let text = p.to_string();
    for clinical in ["Smith", "Khan", "\"code\":{", "valueQuantity", "display"] {
        assert!(!text.contains(clinical), "{clinical} in {text}");
    }
    p
}

#[test]
fn r_lr_explain_names_the_relationship_and_the_fact_it_used() {
    for s in servers() {
        let cases = [
            (
                ("M85001", "R8000", "gp-user"),
                "R-LR-1",
                "GP registration at M85001",
            ),
            (("RXK", "R8000", "trust-user"), "R-LR-2", "visit at RXK"),
            (
                ("LA-DUD", "R8014", "sw-dud-0001"),
                "R-LR-3",
                "allocation at LA-DUD",
            ),
        ];
        for ((org, role, user), rule, fact) in cases {
            let p = ok(
                s,
                JANE,
                &[("organization", org), ("role", role), ("user", user)],
            );
            assert_eq!(param(&p, "outcome"), Some("permit"), "{rule}");
            assert_eq!(param(&p, "rule"), Some(rule));
            assert!(
                evaluations(&p)
                    .iter()
                    .any(|(r, res, d)| r == rule && res == "permit" && d.contains(fact)),
                "{rule}: {:?}",
                evaluations(&p)
            );
            assert!(shown(&p, "Flag") > 0, "{rule}: counts per type");
        }
    }
}

#[test]
fn r_role_3_explain_counts_what_social_care_may_not_see() {
    for s in servers() {
        let p = ok(
            s,
            JANE,
            &[
                ("organization", "LA-DUD"),
                ("role", "R8014"),
                ("user", "sw-dud-0001"),
            ],
        );
        assert!(withheld(&p, "Observation", "R-ROLE-3") > 0, "{p}");
        assert_eq!(shown(&p, "Observation"), 0);
    }
}

#[test]
fn r_role_1_explain_an_unknown_role_and_narrow_scopes() {
    for s in servers() {
        let p = ok(
            s,
            JANE,
            &[("organization", "M85001"), ("role", "R9999"), ("user", "u")],
        );
        assert_eq!(
            (param(&p, "outcome"), param(&p, "rule")),
            (Some("refuse"), Some("R-ROLE-1"))
        );
        let p = ok(
            s,
            JANE,
            &[
                ("organization", "M85001"),
                ("role", "R8000"),
                ("user", "u"),
                ("scope", "user/Patient.rs user/Flag.rs"),
            ],
        );
        assert!(withheld(&p, "Observation", "R-ROLE-1") > 0, "{p}");
    }
}

#[test]
fn r_lr_5_and_r_lr_4_explain_a_refusal_and_whether_a_self_claim_is_open() {
    for s in servers() {
        let crew = [
            ("organization", "RYA"),
            ("role", "R8000"),
            ("user", "nobody-here"),
        ];
        let p = ok(s, JANE, &crew);
        assert_eq!(
            (param(&p, "outcome"), param(&p, "rule")),
            (Some("refuse"), Some("R-LR-5"))
        );
        assert!(param(&p, "reason").unwrap().contains("$break-glass"));
        assert!(!evaluations(&p).iter().any(|(r, _, _)| r == "R-LR-4"));
        let mut etreat = crew.to_vec();
        etreat.push(("purpose", "ETREAT"));
        let p = ok(s, JANE, &etreat);
        assert!(
            evaluations(&p)
                .iter()
                .any(|(r, res, _)| r == "R-LR-4" && res == "permit"),
            "a clinician may self-claim: {:?}",
            evaluations(&p)
        );
        let support = [
            ("organization", "RYA"),
            ("role", "R8008"),
            ("user", "x"),
            ("purpose", "BTG"),
        ];
        let p = ok(s, JANE, &support);
        assert!(evaluations(&p)
            .iter()
            .any(|(r, res, _)| r == "R-LR-4" && res == "refuse"));
    }
}

#[test]
fn r_obj_2_explain_names_the_objection_statement_and_its_source() {
    for s in servers() {
        let p = ok(
            s,
            KHAN,
            &[("organization", "RXK"), ("role", "R8000"), ("user", "u")],
        );
        assert!(
            evaluations(&p).iter().any(|(r, res, d)| r == "R-OBJ-2"
                && res == "restrict"
                && d.contains("objection effective")
                && d.contains("source gp")),
            "{:?}",
            evaluations(&p)
        );
        assert!(withheld(&p, "Flag", "R-OBJ-2") + withheld(&p, "Observation", "R-OBJ-2") > 0);
    }
}

#[test]
fn r_sens_explain_counts_sensitive_and_confidential_records_without_showing_them() {
    for s in servers() {
        let p = ok(
            s,
            SAM,
            &[("organization", "M85001"), ("role", "R8000"), ("user", "u")],
        );
        assert!(withheld(&p, "Observation", "R-SENS-1") > 0, "{p}");
        let p = ok(
            s,
            PETER,
            &[("kind", "system"), ("organization", "RXK"), ("user", "c")],
        );
        assert!(withheld(&p, "Observation", "R-SENS-3") > 0, "{p}");
        let p = ok(s, PETER, &[("kind", "patient"), ("user", PETER)]);
        assert!(
            withheld(&p, "Observation", "R-SENS-3") > 0,
            "R-SENS-3 for the patient too"
        );
    }
}

#[test]
fn r_aud_4_only_privacy_officers_explain_and_it_is_audited() {
    for s in servers() {
        let params = [("organization", "RXK"), ("role", "R8000"), ("user", "u")];
        let r = explain(s, &clinician(s, "M85001"), JANE, &params);
        assert_eq!((r.status, r.issue_code().as_str()), (403, "forbidden"));
        // A privacy officer's token must let them read the audit trail.
        let r = explain(
            s,
            &staff(s, "M85001", "R0001", "user/Consent.rs"),
            JANE,
            &params,
        );
        assert_eq!(r.status, 403);
        let user = format!("explainer-{}-{}", std::process::id(), now());
        let t = staff_as(s, &user, "M85001", "R0001", "user/AuditEvent.rs");
        assert_eq!(explain(s, &t, JANE, &params).status, 200);
        let events = s
            .get(&format!("/AuditEvent?agent={user}"), Some(&officer(s)))
            .json();
        let e = &events["entry"][0]["resource"];
        assert_eq!(
            e["entity"][0]["what"]["reference"],
            format!("Patient/{JANE}")
        );
        assert!(e.to_string().contains("R-AUD-4"), "{e}");
    }
}

#[test]
fn explain_refuses_bad_descriptions_naming_the_parameter() {
    for s in servers() {
        let t = officer(s);
        let r = explain(s, &t, JANE, &[("organization", "RXK"), ("role", "R8000")]);
        assert_eq!((r.status, r.issue_code().as_str()), (400, "invalid"));
        assert!(String::from_utf8_lossy(&r.body).contains("user"));
        let r = explain(s, &t, JANE, &[("user", "u"), ("colour", "blue")]);
        assert_eq!(r.status, 400);
        assert!(String::from_utf8_lossy(&r.body).contains("colour"));
        let r = explain(
            s,
            &t,
            JANE,
            &[
                ("organization", "RXK"),
                ("role", "R8000"),
                ("user", "u"),
                ("purpose", "CURIOSITY"),
            ],
        );
        assert_eq!(r.status, 400);
        assert!(String::from_utf8_lossy(&r.body).contains("purpose"));
        let r = explain(
            s,
            &t,
            "9990000999",
            &[("organization", "RXK"), ("role", "R8000"), ("user", "u")],
        );
        assert_eq!(r.status, 404);
    }
}

#[test]
fn scr_policy_explain_prints_the_same_decision_for_operators() {
    for s in servers() {
        let config = s.dir.join("scr.toml");
        let out = Command::new(BIN)
            .args([
                "policy",
                "explain",
                "--config",
                config.to_str().unwrap(),
                "--patient",
                KHAN,
                "--org",
                "RXK",
                "--role",
                "R8000",
                "--user",
                "u",
            ])
            .env("SCR_LOG", "warn")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("PERMIT by R-LR-2"), "{text}");
        assert!(
            text.contains("R-OBJ-2") && text.contains("restrict"),
            "{text}"
        );
        assert!(!text.contains("Khan"), "no demographics: {text}");
    }
}
