//! A Consent body as a client would POST it: `consent::check_objection` must accept it or name
//! what is wrong, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scr_fhir::{consent, Value};

/// 2026-09-21T07:06:40Z.
const NOW: i64 = 1_790_000_000;

fuzz_target!(|data: &[u8]| {
    let Ok(mut resource) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    if let Some(object) = resource.as_object_mut() {
        object
            .entry("resourceType")
            .or_insert_with(|| Value::from("Consent"));
    }
    let _ = consent::check_objection(&resource, NOW);
});
