//! A Flag body as a client would POST it: `alerts::check_alert` must accept it or name what is
//! wrong, never panic. Whatever it accepts is also ranked and classified.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scr_fhir::{alerts, Value};

fuzz_target!(|data: &[u8]| {
    let Ok(mut flag) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    // Bodies that are not objects, or that forgot the type, still reach the element checks.
    if let Some(object) = flag.as_object_mut() {
        object
            .entry("resourceType")
            .or_insert_with(|| Value::from("Flag"));
    }
    let _ = alerts::flag_rank(&flag);
    if let Some(text) = flag["code"]["text"].as_str() {
        let _ = alerts::classify_text(text);
    }
    let _ = alerts::check_alert(&flag);
});
