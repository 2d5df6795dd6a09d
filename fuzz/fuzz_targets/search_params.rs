//! A query string for each resource type the facade searches: `search::parse_at` must answer
//! with a request or issues, never panic; a parsed request is matched against a resource with
//! dates. Each `name=value` pair's value also goes through the date helpers of `build`.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use scr_fhir::{build, search, Value};

const TYPES: &[&str] = &[
    "Patient",
    "AllergyIntolerance",
    "MedicationStatement",
    "Observation",
    "Flag",
    "Consent",
    "AuditEvent",
];

/// 2026-09-21T07:06:40Z: a fixed "now" keeps every run reproducible.
const NOW: i64 = 1_790_000_000;

fn resources() -> &'static [Value] {
    static R: OnceLock<Vec<Value>> = OnceLock::new();
    R.get_or_init(|| {
        vec![
            serde_json::json!({
                "resourceType": "Observation", "status": "final",
                "category": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory" }] }],
                "code": { "coding": [{ "system": "http://loinc.org", "code": "2951-2" }] },
                "subject": { "reference": "Patient/9990000018" },
                "effectiveDateTime": "2026-11-01T11:30:00+00:00",
            }),
            serde_json::json!({
                "resourceType": "Flag", "status": "active",
                "code": { "text": "Needs an interpreter" },
                "subject": { "reference": "Patient/9990000018" },
                "period": { "start": "2026-11-25", "end": "2027-01" },
            }),
            serde_json::json!({
                "resourceType": "Patient", "id": "9990000018",
                "name": [{ "family": "Smith", "given": ["Jane"] }],
                "birthDate": "1970-01-02",
            }),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let resource_type = TYPES[usize::from(selector) % TYPES.len()];
    let lenient = selector & 0x80 != 0;
    let text = String::from_utf8_lossy(rest);
    let pairs: Vec<(String, String)> = text
        .split('&')
        .take(32)
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (pair.to_owned(), String::new()),
        })
        .collect();
    for (_, value) in &pairs {
        let _ = build::date_time(value);
        let _ = build::utc_date_time(value);
        let _ = build::unix_of_date_time(value);
        let _ = build::is_date(value);
        let _ = build::instant(value);
        let _ = build::days_of(value);
        let _ = search::date_instants(value);
        if let Ok(d) = search::parse_date_at(value, NOW) {
            let _ = (d.lower_instant(), d.upper_instant());
        }
    }
    if let Ok(request) = search::parse_at(resource_type, &pairs, lenient, NOW) {
        let _ = request.patient();
        let _ = request.canonical_query(&pairs);
        for resource in resources() {
            let _ = request.matches(resource);
        }
        for (_, criteria) in &request.criteria {
            for c in criteria {
                if let search::Criterion::Date(d) = c {
                    let _ = (d.lower_instant(), d.upper_instant());
                }
            }
        }
    }
});
