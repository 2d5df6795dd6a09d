//! Issue 11, item 11: the FHIR interactions behave as a conformant client expects.

use crate::harness::*;

const JANE: &str = "9990000018";

#[test]
fn item11_id_works_on_every_type() {
    for s in servers() {
        let t = clinician(s, "M85001");
        for resource_type in [
            "AllergyIntolerance",
            "MedicationStatement",
            "Observation",
            "Flag",
        ] {
            let all = s
                .get(&format!("/{resource_type}?patient={JANE}"), Some(&t))
                .json();
            let found = of_type(&all, resource_type);
            assert!(!found.is_empty(), "{resource_type}: Jane has some");
            let id = found[0]["id"].as_str().unwrap();
            // By `_id` alone, with the patient, and an id no record has.
            let by_id = s.get(&format!("/{resource_type}?_id={id}"), Some(&t));
            assert_eq!(
                by_id.status,
                200,
                "{}",
                String::from_utf8_lossy(&by_id.body)
            );
            let b = by_id.json();
            let ids: Vec<&str> = of_type(&b, resource_type)
                .iter()
                .map(|r| r["id"].as_str().unwrap())
                .collect();
            assert_eq!(ids, [id], "{resource_type}");
            let with_patient = s
                .get(
                    &format!("/{resource_type}?_id={id}&patient={JANE}"),
                    Some(&t),
                )
                .json();
            assert_eq!(of_type(&with_patient, resource_type).len(), 1);
            let other_patient = s
                .get(
                    &format!("/{resource_type}?_id={id}&patient=9990000026"),
                    Some(&t),
                )
                .json();
            assert_eq!(of_type(&other_patient, resource_type).len(), 0);
            let none = s
                .get(&format!("/{resource_type}?_id=gp.999999999"), Some(&t))
                .json();
            assert_eq!(none["total"], 0, "{resource_type}: {none}");
        }
        let p = s.get(&format!("/Patient?_id={JANE}"), Some(&t)).json();
        assert_eq!(of_type(&p, "Patient").len(), 1);
    }
}

#[test]
fn item11_a_patient_identifier_of_another_system_is_an_empty_searchset() {
    for s in servers() {
        let t = clinician(s, "M85001");
        // A hospital number that happens to be ten digits with a valid check digit.
        let r = s.get(
            &format!("/Patient?identifier=https://fhir.rxk.nhs.uk/Id/mrn|{JANE}"),
            Some(&t),
        );
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let b = r.json();
        assert_eq!(b["type"], "searchset");
        assert_eq!(b["total"], 0, "{b}");
    }
}

#[test]
fn item11_allow_on_405_names_the_methods_of_that_route() {
    for s in servers() {
        for (method, path, allow) in [
            ("DELETE", "/metadata", "GET"),
            ("PUT", "/Consent", "GET, POST"),
            ("DELETE", "/Patient/9990000018", "GET, PUT"),
            ("GET", "/Patient/9990000018/$break-glass", "POST"),
            ("GET", "/Observation/_search", "POST"),
            ("DELETE", "/AuditEvent/1", "GET"),
            ("PATCH", "/Flag", "GET, POST"),
        ] {
            let r = s.request(method, path, &[], b"");
            assert_eq!(r.status, 405, "{method} {path}");
            assert_eq!(r.header("Allow"), Some(allow), "{method} {path}");
            assert_eq!(r.issue_code(), "not-supported");
        }
    }
}

#[test]
fn item11_an_audit_event_in_a_search_can_be_read_at_its_full_url() {
    for s in servers() {
        // Something to find.
        assert_eq!(
            s.get(&format!("/Patient/{JANE}"), Some(&clinician(s, "M85001")))
                .status,
            200
        );
        let po = staff_as(
            s,
            "po-0001",
            "M85001",
            "R0001",
            "user/AuditEvent.rs user/Consent.rs",
        );
        let b = s
            .get(&format!("/AuditEvent?patient={JANE}&_count=1"), Some(&po))
            .json();
        let entry = &b["entry"][0];
        let full_url = entry["fullUrl"].as_str().unwrap();
        let path = full_url.split("/fhir").nth(1).unwrap();
        let read = s.get(path, Some(&po));
        assert_eq!(read.status, 200, "{}", String::from_utf8_lossy(&read.body));
        assert_eq!(read.json(), entry["resource"]);
        // The patient reads their own record's events, redacted as in their search.
        let me = patient(s, JANE, "P9");
        let own = s.get(path, Some(&me));
        assert_eq!(own.status, 200);
        assert_eq!(
            own.json()["agent"][0]["who"]["display"],
            "a member of staff"
        );
        // Another patient, a clinician, and an id that is not one: 404 or 403, never the event.
        assert_eq!(
            s.get(path, Some(&patient(s, "9990000026", "P9"))).status,
            404
        );
        assert_eq!(s.get(path, Some(&clinician(s, "M85001"))).status, 403);
        assert_eq!(s.get("/AuditEvent/x1", Some(&po)).status, 404);
        let by_id = s
            .get(
                &format!("/AuditEvent?_id={}", path.rsplit('/').next().unwrap()),
                Some(&po),
            )
            .json();
        assert_eq!(by_id["total"], 1);
    }
}

#[test]
fn item11_the_interpreter_need_is_a_patient_extension_and_the_language_a_communication() {
    for s in servers() {
        let p = s
            .get(&format!("/Patient/{JANE}"), Some(&clinician(s, "M85001")))
            .json();
        let ext = p["extension"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| {
                e["url"] == "http://hl7.org/fhir/StructureDefinition/patient-interpreterRequired"
            })
            .unwrap_or_else(|| panic!("no interpreterRequired on the Patient: {p}"));
        assert_eq!(ext["valueBoolean"], true);
        for c in p["communication"].as_array().unwrap() {
            assert!(c.get("extension").is_none(), "its context is Patient: {c}");
        }
        assert_eq!(p["communication"][0]["language"]["coding"][0]["code"], "pa");
    }
}
