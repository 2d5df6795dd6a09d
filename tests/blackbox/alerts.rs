//! Issue 11 item 10: practice alerts from the GP replica are ranked by their SNOMED CT code
//! (one ValueSet per category in `fhir-profiles/`), their text only when no ValueSet lists the
//! code; "No known allergies" never heads the record as a severe allergy.

use diesel::RunQueryDsl;

use crate::harness::*;

const LINDA: &str = "9990000069";

/// Adds practice alerts to Linda's current registration (M85002) in the GP replica, which the
/// facade reads live: (alert id, SNOMED CT code, term).
fn add_gp_alerts(s: &Server, alerts: &[(&str, Option<&str>, &str)]) {
    let config = scr_server::config::Config::load(&s.dir.join("scr.toml")).expect("config");
    let pool = scr_db::open_pool(
        "gp-test",
        &config.sources.gp[0].url,
        &scr_db::PoolOptions {
            max_size: 1,
            ..Default::default()
        },
    )
    .expect("GP replica");
    let mut conn = pool.get().expect("connection");
    for (id, code, term) in alerts {
        let code = code.map_or("NULL".to_owned(), |c| format!("'{c}'"));
        let sql = format!(
            "INSERT INTO patient_alert (alert_guid, patient_guid, org_guid, snomed_concept_id, term, alert_text, start_date, end_date, recorded_at) \
             SELECT '{id}', 'gp-pat-0006b', org_guid, {code}, '{term}', NULL, '2026-01-05', NULL, '2026-01-05T10:00:00Z' \
             FROM organisation WHERE ods_code = 'M85002' \
             ON CONFLICT (alert_guid) DO NOTHING"
        );
        diesel::sql_query(&sql)
            .execute(&mut conn)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

fn category(flag: &serde_json::Value) -> String {
    flag["category"][0]["coding"][0]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn item10_gp_alerts_are_ranked_by_snomed_code_and_no_known_allergies_never_comes_first() {
    for s in servers() {
        add_gp_alerts(
            s,
            &[
                (
                    "bb-item10-nka-coded",
                    Some("716186003"),
                    "No known allergies",
                ),
                (
                    "bb-item10-nka-text",
                    None,
                    "No known allergies - confirmed with patient",
                ),
                (
                    "bb-item10-cpp",
                    Some("342191000000101"),
                    "See safeguarding lead",
                ),
                ("bb-item10-peanut", Some("91935009"), "Peanuts"),
            ],
        );
        let r = s.get(
            &format!("/Patient/{LINDA}/$everything"),
            Some(&clinician(s, "M85002")),
        );
        assert_eq!(r.status, 200);
        let b = r.json();
        let flags: Vec<&serde_json::Value> = b["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| &e["resource"])
            .filter(|r| r["resourceType"] == "Flag" && r["status"] == "active")
            .collect();
        let by_text = |text: &str| {
            flags
                .iter()
                .position(|f| f["code"]["text"].as_str() == Some(text))
                .unwrap_or_else(|| panic!("no alert '{text}' in {flags:?}"))
        };
        let (nka_coded, nka_text, cpp, peanut) = (
            by_text("No known allergies"),
            by_text("No known allergies - confirmed with patient"),
            by_text("See safeguarding lead"),
            by_text("Peanuts"),
        );
        assert_eq!(category(flags[nka_coded]), "other", "by its code");
        assert_eq!(
            category(flags[nka_text]),
            "other",
            "by its text, negation understood"
        );
        assert_eq!(
            category(flags[cpp]),
            "safeguarding",
            "by its code, whatever the text"
        );
        assert_eq!(category(flags[peanut]), "severe-allergy-condition");
        assert_eq!(
            category(flags[0]),
            "safeguarding",
            "the safeguarding alert opens the record"
        );
        assert!(
            nka_coded > peanut && nka_text > peanut,
            "no known allergies ranks below a real allergy"
        );
    }
}
