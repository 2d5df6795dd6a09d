//! The generated decision table (access rules issue): every caller profile x relationship kind x
//! objection x record label, through every read interaction (read by id, search, `_include`,
//! `_summary=count`, `$everything`, page 2 and beyond), against the real server.
//!
//! The expected answer is computed here, independently of the server's policy code, from the
//! fixtures' facts: the patient's own view (R-OBJ-6), with the entries only their recording
//! practice sees (R-SENS-3), is the whole record; from it the oracle removes what the agreement
//! withholds from each caller. A withheld record must appear in no
//! answer, no count, no page, and read as 404 by id.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::harness::*;

const TYPES: [&str; 4] = [
    "AllergyIntolerance",
    "MedicationStatement",
    "Observation",
    "Flag",
];

/// The fixture patients and what the oracle needs to know about them.
struct PatientFacts {
    nhs: &'static str,
    objection: bool,
}

const PATIENTS: [PatientFacts; 5] = [
    PatientFacts {
        nhs: "9990000018",
        objection: false,
    }, // Jane: GP, two trusts' data, social care
    PatientFacts {
        nhs: "9990000026",
        objection: true,
    }, // Khan: objected
    PatientFacts {
        nhs: "9990000034",
        objection: true,
    }, // Amelia: a parent objected for her
    PatientFacts {
        nhs: "9990000042",
        objection: false,
    }, // Sam: GUM and FERT results at RXK
    PatientFacts {
        nhs: "9990000050",
        objection: false,
    }, // Peter: GP-confidential entries
];

/// Codes of the synthetic sexual health and fertility results (R-SENS-2, held by RXK), and the
/// LOINC codes of the sensitive value set (R-SENS-1).
const SENSITIVE_CODES: [&str; 7] = [
    "43304-5", "43305-2", "15067-2", "10501-5", "21613-5", "24111-7", "7905-3",
];
/// GP-confidential entries (R-SENS-3; held by M85002).
const CONFIDENTIAL_IDS: [&str; 2] = ["gp.gp-obs-0005-05", "gp.gp-med-0005-03"];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Staff,
    Patient,
    System,
}

/// One caller: a profile acting for an organisation, with the patients it has a relationship
/// with (by kind) per the fixtures.
struct Caller {
    label: &'static str,
    kind: Kind,
    org: &'static str,
    readable: &'static [&'static str],
    /// (patient, relationship kind) the caller may open.
    related: &'static [(&'static str, &'static str)],
    token: String,
}

fn callers(s: &Server) -> Vec<Caller> {
    const ALL: &[&str] = &[
        "Patient",
        "AllergyIntolerance",
        "MedicationStatement",
        "Observation",
        "Flag",
    ];
    const SUPPORT: &[&str] = &[
        "Patient",
        "AllergyIntolerance",
        "MedicationStatement",
        "Flag",
    ];
    const SOCIAL: &[&str] = &["Patient", "Flag"];
    let crew_user = format!("table-crew-{}-{}", std::process::id(), now());
    let crew = staff_as(s, &crew_user, "RYA", "R8000", "user/*.rs");
    let mut v = vec![
        Caller {
            label: "GP clinician M85001 (registration)",
            kind: Kind::Staff,
            org: "M85001",
            readable: ALL,
            related: &[
                ("9990000018", "R-LR-1"),
                ("9990000026", "R-LR-1"),
                ("9990000042", "R-LR-1"),
            ],
            token: clinician(s, "M85001"),
        },
        Caller {
            label: "GP admin M85001 (clinical support)",
            kind: Kind::Staff,
            org: "M85001",
            readable: SUPPORT,
            related: &[
                ("9990000018", "R-LR-1"),
                ("9990000026", "R-LR-1"),
                ("9990000042", "R-LR-1"),
            ],
            token: staff(s, "M85001", "R8008", "user/*.rs"),
        },
        Caller {
            label: "GP clinician M85002 (registration)",
            kind: Kind::Staff,
            org: "M85002",
            readable: ALL,
            related: &[("9990000034", "R-LR-1"), ("9990000050", "R-LR-1")],
            token: clinician(s, "M85002"),
        },
        Caller {
            label: "acute trust clinician RXK (visit)",
            kind: Kind::Staff,
            org: "RXK",
            readable: ALL,
            related: &[
                ("9990000018", "R-LR-2"),
                ("9990000026", "R-LR-2"),
                ("9990000042", "R-LR-2"),
            ],
            token: clinician(s, "RXK"),
        },
        Caller {
            label: "social worker LA-DUD (allocation)",
            kind: Kind::Staff,
            org: "LA-DUD",
            readable: SOCIAL,
            related: &[("9990000018", "R-LR-3")],
            token: staff_as(s, "sw-dud-0001", "LA-DUD", "R8014", "user/*.rs"),
        },
        Caller {
            label: "social worker LA-DUD (team allocation)",
            kind: Kind::Staff,
            org: "LA-DUD",
            readable: SOCIAL,
            related: &[("9990000034", "R-LR-3")],
            token: staff_as(s, "sw-dud-0002", "LA-DUD", "R8014", "user/*.rs"),
        },
        Caller {
            label: "ambulance clinician RYA (no relationship)",
            kind: Kind::Staff,
            org: "RYA",
            readable: ALL,
            related: &[],
            token: clinician(s, "RYA"),
        },
        Caller {
            label: "ambulance clinician RYA (break glass on Sam)",
            kind: Kind::Staff,
            org: "RYA",
            readable: ALL,
            related: &[("9990000042", "R-LR-4")],
            token: crew,
        },
        Caller {
            label: "privacy officer",
            kind: Kind::Staff,
            org: "M85001",
            readable: &[],
            related: &[],
            token: staff(s, "M85001", "R0001", "user/*.rs"),
        },
        Caller {
            label: "backend service of RXK",
            kind: Kind::System,
            org: "RXK",
            readable: ALL,
            related: &[],
            token: system(s, "RXK", "system/*.rs"),
        },
    ];
    for p in PATIENTS {
        v.push(Caller {
            label: "patient (NHS login P9)",
            kind: Kind::Patient,
            org: "",
            readable: ALL,
            related: &[],
            token: patient(s, p.nhs, "P9"),
        });
    }
    // The break-glass caller claims its relationship once, as a clinician would.
    let body = serde_json::json!({"resourceType": "Parameters", "parameter": [
        {"name": "purpose", "valueCode": "BTG"}, {"name": "reason", "valueString": "Decision table: self-claimed relationship"}]});
    let auth = format!("Bearer {}", v[7].token);
    let r = s.request(
        "POST",
        "/Patient/9990000042/$break-glass",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/fhir+json"),
        ],
        body.to_string().as_bytes(),
    );
    assert_eq!(r.status, 200);
    v
}

fn key(r: &Value) -> String {
    format!(
        "{}/{}",
        r["resourceType"].as_str().unwrap(),
        r["id"].as_str().unwrap()
    )
}

fn ids(list: &[Value]) -> BTreeSet<String> {
    list.iter().map(key).collect()
}

/// The oracle: may this caller see this record of this patient?
fn expected_visible(c: &Caller, p: &PatientFacts, r: &Value) -> bool {
    let rt = r["resourceType"].as_str().unwrap();
    if !c.readable.contains(&rt) {
        return false;
    }
    let id = r["id"].as_str().unwrap_or_default();
    if c.kind == Kind::Patient {
        // R-SENS-3: GP-confidential entries stay with the recording practice, patient included.
        return !CONFIDENTIAL_IDS.contains(&id);
    }
    let holder = ods_tags(r);
    let held_here = holder.iter().any(|o| o == c.org);
    let code = r["code"]["coding"][0]["code"].as_str().unwrap_or_default();
    if SENSITIVE_CODES.contains(&code) && !held_here {
        return false;
    }
    if CONFIDENTIAL_IDS.contains(&id) && !held_here {
        return false;
    }
    !p.objection || held_here
}

fn may_open(c: &Caller, p: &PatientFacts, own: &str) -> bool {
    match c.kind {
        Kind::Patient => own == p.nhs,
        Kind::System => true,
        Kind::Staff => c.related.iter().any(|(n, _)| *n == p.nhs),
    }
}

#[test]
fn r_sens_4_decision_table_withheld_records_leave_no_trace_in_any_interaction() {
    for s in servers() {
        let callers = callers(s);
        // The whole record of each patient: what the patient sees of themself (R-OBJ-6), with
        // what the practice that recorded them sees of the entries it marked confidential
        // (R-SENS-3: shown only to the recording practice, not even to the patient).
        let matches = |b: &Value| -> Vec<Value> {
            b["entry"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["search"]["mode"] == "match")
                .map(|e| e["resource"].clone())
                .filter(|r| r["resourceType"] != "Patient")
                .collect()
        };
        let whole: Vec<Vec<Value>> = PATIENTS
            .iter()
            .map(|p| {
                let own = s
                    .get(
                        &format!("/Patient/{}/$everything", p.nhs),
                        Some(&patient(s, p.nhs, "P9")),
                    )
                    .json();
                let mut all = matches(&own);
                for c in callers.iter().filter(|c| c.kind == Kind::Staff) {
                    let r = s.get(&format!("/Patient/{}/$everything", p.nhs), Some(&c.token));
                    if r.status == 200 {
                        for rec in matches(&r.json()) {
                            if !all.iter().any(|a| key(a) == key(&rec)) {
                                all.push(rec);
                            }
                        }
                    }
                }
                all
            })
            .collect();
        assert!(
            whole.iter().flatten().any(|r| SENSITIVE_CODES
                .contains(&r["code"]["coding"][0]["code"].as_str().unwrap_or_default())),
            "the table covers sensitive records"
        );
        assert!(
            whole
                .iter()
                .flatten()
                .any(|r| CONFIDENTIAL_IDS.contains(&r["id"].as_str().unwrap_or_default())),
            "and confidential ones"
        );

        let mut combinations = 0;
        let mut withheld_checked = 0;
        for (ci, c) in callers.iter().enumerate() {
            // Patient callers: each one is the patient of its own index.
            let own = if c.kind == Kind::Patient {
                PATIENTS[ci - (callers.len() - PATIENTS.len())].nhs
            } else {
                ""
            };
            for (p, all) in PATIENTS.iter().zip(&whole) {
                let ctx = format!("{} x patient {}", c.label, p.nhs);
                let expected: BTreeSet<String> = all
                    .iter()
                    .filter(|r| expected_visible(c, p, r))
                    .map(key)
                    .collect();
                let withheld: Vec<&Value> = all
                    .iter()
                    .filter(|r| {
                        c.readable.contains(&r["resourceType"].as_str().unwrap())
                            && !expected.contains(&key(r))
                    })
                    .collect();
                let opens = may_open(c, p, own) && c.readable.contains(&"Patient");

                // $everything
                let every = s.get(&format!("/Patient/{}/$everything", p.nhs), Some(&c.token));
                combinations += 1;
                if !opens {
                    assert_eq!(every.status, 403, "{ctx}: $everything");
                } else {
                    assert_eq!(every.status, 200, "{ctx}: $everything");
                    let b = every.json();
                    let got: Vec<Value> = b["entry"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter(|e| e["search"]["mode"] == "match")
                        .map(|e| e["resource"].clone())
                        .collect();
                    assert_eq!(got[0]["resourceType"], "Patient", "{ctx}");
                    assert_eq!(ids(&got[1..]), expected, "{ctx}: $everything");
                    assert_eq!(
                        b["total"].as_u64(),
                        Some(expected.len() as u64 + 1),
                        "{ctx}: $everything total"
                    );
                }

                for rt in TYPES {
                    let of_rt: BTreeSet<String> = expected
                        .iter()
                        .filter(|k| k.starts_with(&format!("{rt}/")))
                        .cloned()
                        .collect();
                    let readable = c.readable.contains(&rt);
                    // search, paged by 2 (page 2 and beyond), and _summary=count
                    combinations += 3;
                    let first = format!("/{rt}?patient={}&_count=2", p.nhs);
                    if !opens || !readable {
                        assert_eq!(
                            s.get(&first, Some(&c.token)).status,
                            403,
                            "{ctx}: {rt} search"
                        );
                        assert_eq!(
                            s.get(
                                &format!("/{rt}?patient={}&_summary=count", p.nhs),
                                Some(&c.token)
                            )
                            .status,
                            403,
                            "{ctx}: {rt} count"
                        );
                        continue;
                    }
                    let (pages, total) = s.all_pages(&first, &c.token);
                    assert_eq!(ids(&pages), of_rt, "{ctx}: {rt} search, all pages");
                    assert_eq!(
                        pages.len(),
                        of_rt.len(),
                        "{ctx}: {rt} no record on two pages"
                    );
                    assert_eq!(total, Some(of_rt.len() as u64), "{ctx}: {rt} total");
                    let count = s
                        .get(
                            &format!("/{rt}?patient={}&_summary=count", p.nhs),
                            Some(&c.token),
                        )
                        .json();
                    assert_eq!(
                        count["total"].as_u64(),
                        Some(of_rt.len() as u64),
                        "{ctx}: {rt} _summary=count"
                    );
                    // _include of the patient
                    combinations += 1;
                    let inc = s
                        .get(
                            &format!("/{rt}?patient={}&_include={rt}:patient", p.nhs),
                            Some(&c.token),
                        )
                        .json();
                    let included = inc["entry"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|e| e["search"]["mode"] == "include")
                        .count();
                    assert_eq!(
                        included,
                        usize::from(!of_rt.is_empty()),
                        "{ctx}: {rt} _include"
                    );
                }
                // read by id: everything expected reads, everything withheld is a 404
                combinations += 1;
                if opens {
                    if let Some(k) = expected.iter().next() {
                        assert_eq!(
                            s.get(&format!("/{k}"), Some(&c.token)).status,
                            200,
                            "{ctx}: read {k}"
                        );
                    }
                }
                for r in &withheld {
                    let k = key(r);
                    let got = s.get(&format!("/{k}"), Some(&c.token));
                    let expected_status =
                        if c.readable.contains(&r["resourceType"].as_str().unwrap()) {
                            404
                        } else {
                            403
                        };
                    assert_eq!(got.status, expected_status, "{ctx}: read of withheld {k}");
                    withheld_checked += 1;
                }
            }
        }
        eprintln!("decision table ({}): {} callers x {} patients, {combinations} interaction checks, {withheld_checked} withheld records read by id", s.name, callers.len(), PATIENTS.len());
        assert!(withheld_checked > 0);
    }
}
