//! HL7 v2 text in: parse it, read and check its header, and plan its translation, as the ingest
//! does before it touches the store. Also every timestamp reader on the input. None may panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use scr_hl7::time::{hl7_from_iso, Hl7Time};
use scr_hl7_ingest::translate::{check_header, header, plan};
use scr_hl7::parse;
use scr_hl7_ingest::{split_messages, Hl7Config};

const RECEIVED_AT: &str = "2026-11-05T10:00:00Z";

fn cfg() -> &'static Hl7Config {
    static CFG: OnceLock<Hl7Config> = OnceLock::new();
    // The facilities of the example messages, so that the fuzzer gets past MSH-4.
    CFG.get_or_init(|| Hl7Config {
        facilities: vec!["RXK".into(), "RYW".into(), "TAJ".into()],
        sensitive_services: vec!["GUM".into(), "FERT".into()],
        sensitive_codes: vec!["399186007".into()],
    })
}

fn translate(raw: &str) {
    let Ok(msg) = parse(raw) else { return };
    let _ = msg.to_string();
    let cfg = cfg();
    let head = header(&msg, RECEIVED_AT, cfg);
    if let Ok(kind) = check_header(&msg, &head, cfg) {
        let _ = plan(&msg, kind, &head, cfg);
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    translate(&text);
    // A file of messages (MLLP-framed or one per MSH), as `scr ingest hl7` reads it.
    for message in split_messages(&text).iter().take(8) {
        translate(message);
    }
    let zone = scr_fhir::zone::default_zone();
    if let Some(t) = Hl7Time::parse(&text) {
        let _ = (t.precision(), t.fhir_date(), t.fhir_date_time());
        let _ = (t.fhir_instant(), t.utc_instant());
        let t = t.in_zone(&zone);
        let _ = (t.fhir_date(), t.fhir_date_time(), t.fhir_instant(), t.utc_instant());
    }
    let _ = hl7_from_iso(&text);
});
