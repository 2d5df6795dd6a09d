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

/// Issue 11, item 5: input that used to panic a worker (the connection was dropped) is answered.
#[test]
fn hostile_input_a_multibyte_period_start_or_a_huge_offset_is_answered_not_a_dropped_connection() {
    for s in servers() {
        let flag = r#"{"resourceType":"Flag","status":"active","category":[{"coding":[{"system":"https://scr.example.nhs.uk/CodeSystem/alert-category","code":"communication-support"}]}],"code":{"text":"x"},"subject":{"reference":"Patient/9990000018"},"period":{"start":"2026-11-2éT10:00:00Z"}}"#;
        let t = staff(s, "M85001", "R8000", "user/*.rs user/Flag.cu");
        let auth = format!("Bearer {t}");
        for headers in [
            vec![("Content-Type", "application/fhir+json")],
            vec![
                ("Content-Type", "application/fhir+json"),
                ("Authorization", auth.as_str()),
            ],
        ] {
            let r = s.request("POST", "/Flag", &headers, flag.as_bytes());
            assert_eq!((r.status, r.issue_code().as_str()), (400, "invalid"));
            assert!(String::from_utf8_lossy(&r.body).contains("period"));
        }
        let r = s.get(
            "/Observation?patient=9990000018&_offset=18446744073709551615",
            Some(&clinician(s, "M85001")),
        );
        assert_eq!(r.status, 200);
        let b = r.json();
        assert!(b["entry"]
            .as_array()
            .is_none_or(|e| e.iter().all(|e| e["search"]["mode"] != "match")));
        assert!(!b["link"].to_string().contains("\"next\""));
    }
}

/// Issue 11, item 11: an impossible date is a 400, and `_count=0` gives no `next` (or
/// `previous`) link equal to `self`, which would make a client loop for ever.
#[test]
fn bad_input_impossible_dates_and_count_zero_paging() {
    for s in servers() {
        let t = clinician(s, "M85001");
        for date in ["2026-02-30", "2025-02-29", "2026-04-31"] {
            let r = s.get(
                &format!("/Observation?patient=9990000018&date={date}"),
                Some(&t),
            );
            assert_eq!(
                (r.status, r.issue_code().as_str()),
                (400, "invalid"),
                "{date}"
            );
        }
        let leap = s.get("/Observation?patient=9990000018&date=2024-02-29", Some(&t));
        assert_eq!(leap.status, 200);
        for offset in ["0", "3"] {
            let b = s
                .get(
                    &format!("/Observation?patient=9990000018&_count=0&_offset={offset}"),
                    Some(&t),
                )
                .json();
            assert!(b["total"].as_u64().unwrap() > 0);
            let links: Vec<&str> = b["link"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["relation"].as_str().unwrap())
                .collect();
            assert_eq!(links, ["self"], "offset {offset}");
        }
    }
}

#[derive(diesel::QueryableByName)]
struct Rows {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

#[derive(diesel::QueryableByName)]
struct Newest {
    #[diesel(sql_type = diesel::sql_types::Text)]
    resource: String,
}

fn audit_rows(s: &Server) -> i64 {
    use diesel::RunQueryDsl;
    diesel::sql_query("SELECT COUNT(*) AS n FROM audit_event")
        .get_result::<Rows>(&mut store_connection(s))
        .unwrap()
        .n
}

fn newest_audit_resource(s: &Server) -> String {
    use diesel::RunQueryDsl;
    diesel::sql_query("SELECT resource FROM audit_event ORDER BY seq DESC LIMIT 1")
        .get_result::<Newest>(&mut store_connection(s))
        .unwrap()
        .resource
}

fn limited(config: String) -> String {
    config
        .replace(
            &format!("refusals_per_minute = {LIFTED_LIMIT}"),
            "refusals_per_minute = 4",
        )
        .replace(
            &format!("token_requests_per_minute = {LIFTED_LIMIT}"),
            "token_requests_per_minute = 3",
        )
}

#[test]
fn item4_r_aud_1_refusals_are_limited_per_address_and_stop_growing_the_audit_trail() {
    let servers = own_servers("limits", limited);
    for s in servers {
        let before = audit_rows(&s);
        // A refusal's query is kept only in part.
        let long = format!("/Patient?family={}&birthdate=1970-01-02", "X".repeat(4000));
        assert_eq!(s.get(&long, None).status, 401);
        let stored = newest_audit_resource(&s);
        assert!(stored.contains("query-truncated"), "{stored}");
        assert!(stored.len() < 3000, "{} bytes stored", stored.len());
        for _ in 0..3 {
            assert_eq!(s.get("/Patient/9990000018", None).status, 401);
        }
        // Over the limit: 429 with Retry-After; the first is audited, the rest are not.
        for _ in 0..5 {
            let r = s.get("/Patient/9990000018", None);
            assert_eq!(r.status, 429, "{}", String::from_utf8_lossy(&r.body));
            assert!(r
                .header("Retry-After")
                .and_then(|v| v.parse::<u64>().ok())
                .is_some_and(|v| (1..=60).contains(&v)));
            assert_eq!(r.issue_code(), "throttled");
        }
        assert_eq!(
            audit_rows(&s) - before,
            5,
            "four refusals within the limit and the first over it"
        );
        // A caller who is not refused is not limited.
        let ok = s.get("/Patient/9990000018", Some(&clinician(&s, "M85001")));
        assert_eq!(ok.status, 200);
        // The token endpoint, per client and address.
        let statuses: Vec<u16> = (0..5)
            .map(|_| {
                s.request(
                    "POST",
                    "/auth/token",
                    &[("Content-Type", "application/x-www-form-urlencoded")],
                    b"grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=e30.eyJpc3MiOiJ4In0.x",
                )
                .status
            })
            .collect();
        assert_eq!(&statuses[3..], &[429, 429], "{statuses:?}");
        assert!(statuses[..3].iter().all(|s| *s != 429), "{statuses:?}");
    }
}
