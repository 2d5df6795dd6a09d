//! Every error is an OperationOutcome with the right status and issue code.

use crate::harness::*;

#[test]
fn unknown_search_parameter_is_400_unless_lenient() {
    for s in servers() {
        let t = clinician(s, "M85001");
        let r = s.get("/Observation?patient=9990000018&colour=blue", Some(&t));
        assert_eq!(r.status, 400);
        assert_eq!(r.issue_code(), "not-supported");
        let auth = format!("Bearer {t}");
        let lenient = s.request(
            "GET",
            "/Observation?patient=9990000018&colour=blue",
            &[("Authorization", &auth), ("Prefer", "handling=lenient")],
            b"",
        );
        assert_eq!(lenient.status, 200);
        let b = lenient.json();
        let warned = b["entry"].as_array().unwrap().iter().any(|e| {
            e["resource"]["resourceType"] == "OperationOutcome"
                && e["resource"].to_string().contains("colour")
        });
        assert!(warned, "lenient handling reports the ignored parameter");
    }
}

#[test]
fn malformed_nhs_number_and_date_are_400_invalid() {
    for s in servers() {
        let t = clinician(s, "M85001");
        let r = s.get(
            "/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9990000017",
            Some(&t),
        );
        assert_eq!((r.status, r.issue_code().as_str()), (400, "invalid"));
        let r = s.get(
            "/Observation?patient=9990000018&date=ge2026-13-45",
            Some(&t),
        );
        assert_eq!((r.status, r.issue_code().as_str()), (400, "invalid"));
        let r = s.get("/Observation?patient=Patient/12345", Some(&t));
        assert_eq!((r.status, r.issue_code().as_str()), (400, "invalid"));
    }
}

#[test]
fn unknown_id_is_404_not_found() {
    for s in servers() {
        let t = clinician(s, "M85001");
        for path in [
            "/Patient/9990000085",
            "/Patient/not-a-number",
            "/Observation/gp.no-such-row",
            "/Observation/nosuchsource.x",
            "/Flag/plain",
        ] {
            let r = s.get(path, Some(&t));
            assert_eq!(
                (r.status, r.issue_code().as_str()),
                (404, "not-found"),
                "{path}"
            );
        }
        let r = s.get("/Encounter/1", Some(&t));
        assert_eq!((r.status, r.issue_code().as_str()), (404, "not-supported"));
    }
}

#[test]
fn wrong_method_is_405_with_allow() {
    for s in servers() {
        let t = format!("Bearer {}", clinician(s, "M85001"));
        for (method, path) in [
            ("DELETE", "/Patient/9990000018"),
            ("POST", "/Patient"),
            ("PUT", "/Observation/gp.x"),
            ("GET", "/Patient/_search"),
        ] {
            let r = s.request(method, path, &[("Authorization", &t)], b"");
            assert_eq!(r.status, 405, "{method} {path}");
            assert!(r.header("Allow").is_some());
            assert_eq!(r.issue_code(), "not-supported");
        }
    }
}

#[test]
fn search_post_needs_a_form_body_else_415() {
    for s in servers() {
        let t = format!("Bearer {}", clinician(s, "M85001"));
        let r = s.request(
            "POST",
            "/Observation/_search",
            &[("Authorization", &t), ("Content-Type", "application/json")],
            b"{}",
        );
        assert_eq!((r.status, r.issue_code().as_str()), (415, "not-supported"));
        let form = s.request(
            "POST",
            "/Observation/_search",
            &[
                ("Authorization", &t),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            b"patient=9990000018&_summary=count",
        );
        assert_eq!(form.status, 200);
        assert!(form.json()["total"].as_u64().unwrap() > 0);
    }
}

#[test]
fn xml_only_accept_is_406() {
    for s in servers() {
        let t = format!("Bearer {}", clinician(s, "M85001"));
        let r = s.request(
            "GET",
            "/Patient/9990000018",
            &[("Authorization", &t), ("Accept", "application/fhir+xml")],
            b"",
        );
        assert_eq!((r.status, r.issue_code().as_str()), (406, "not-supported"));
    }
}

#[test]
fn clinical_search_without_a_patient_is_400_required() {
    for s in servers() {
        let r = s.get("/Observation?code=2823-3", Some(&clinician(s, "M85001")));
        assert_eq!((r.status, r.issue_code().as_str()), (400, "required"));
    }
}
