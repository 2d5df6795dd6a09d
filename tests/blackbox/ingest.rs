//! `scr ingest hl7`: idempotent per MSH-4 + MSH-10, corrections and cancellations visible on the
//! next read, bad messages kept and counted, through the real binary and the FHIR API.

use crate::harness::*;

const LINDA: &str = "9990000069";

fn oru(control_id: &str, status: &str, value: &str) -> String {
    [
        format!("MSH|^~\\&|LAB|RXK|SCR|SCR|20261120100000||ORU^R01|{control_id}|P|2.4"),
        format!("PID|1||{LINDA}^^^NHS^NH||BROWN^LINDA||19800404|F"),
        "OBR|1||TESTGLU1|GLU^Glucose^L|||20261120090000|||||||||||||||||CH".to_string(),
        format!("OBX|1|NM|2345-7^Glucose^LN||{value}|mmol/L|3.0-7.8|N|||{status}|||20261120093000"),
    ]
    .join("\r")
}

fn ingest(server: &Server, text: &str, name: &str) -> String {
    let file = server.dir.join(name);
    std::fs::write(&file, text).unwrap();
    scr_cli_ok(
        server,
        &["ingest", "hl7", file.to_str().unwrap_or_default()],
    )
}

fn glucose(server: &Server) -> Vec<serde_json::Value> {
    let b = server
        .get(
            &format!("/Observation?patient={LINDA}&code=http://loinc.org|2345-7"),
            Some(&clinician(server, "M85002")),
        )
        .json();
    of_type(&b, "Observation").into_iter().cloned().collect()
}

#[test]
fn ingest_applies_once_then_corrects_then_cancels() {
    for s in servers() {
        let first = format!(
            "{}\n\n{}\n\n{}\n",
            register_linda_a28("BBTEST0000", "RXK"),
            oru("BBTEST0001", "F", "6.1"),
            oru("BBTEST0001", "F", "6.1")
        );
        let summary = ingest(s, &first, "first.hl7");
        assert!(
            summary.contains("3 accepted (AA), of which 1 duplicates"),
            "{summary}"
        );
        let once = glucose(s);
        assert_eq!(once.len(), 1, "a resent message is applied once");
        assert_eq!(once[0]["valueQuantity"]["value"], 6.1);

        ingest(s, &oru("BBTEST0002", "C", "7.4"), "correction.hl7");
        let corrected = glucose(s);
        assert_eq!(corrected.len(), 1);
        assert_eq!(
            corrected[0]["id"], once[0]["id"],
            "a correction keeps the record's id"
        );
        assert_eq!(corrected[0]["valueQuantity"]["value"], 7.4);
        assert_eq!(corrected[0]["status"], "corrected");

        ingest(s, &oru("BBTEST0003", "X", "7.4"), "cancel.hl7");
        assert!(
            glucose(s).is_empty(),
            "a cancelled result is no longer shown"
        );
        let id = once[0]["id"].as_str().unwrap();
        assert_eq!(
            s.get(&format!("/Observation/{id}"), Some(&clinician(s, "RXK")))
                .status,
            404
        );
    }
}

#[test]
fn ingest_keeps_bad_messages_in_quarantine_with_a_reason() {
    for s in servers() {
        let bad_nhs = oru("BBTEST0101", "F", "5.0").replace(LINDA, "9990000017");
        let unknown = oru("BBTEST0102", "F", "5.0").replace("|LAB|RXK|", "|LAB|ZZZ|");
        let summary = ingest(
            s,
            &format!("{bad_nhs}\n{unknown}\nnot an hl7 message\n"),
            "bad.hl7",
        );
        assert!(summary.contains("1 application errors (AE)"), "{summary}");
        assert!(summary.contains("rejected (AR)"), "{summary}");
        assert!(!summary.contains("0 rejected"), "{summary}");
    }
}
