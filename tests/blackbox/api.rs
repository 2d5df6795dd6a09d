//! The read side of the facade: Patient merged from every source, clinical searches with paging,
//! `_summary=count`, `_include`, `$everything` with alerts first, and the first access rules.

use serde_json::Value;

use crate::harness::*;

const JANE: &str = "9990000018";

#[test]
fn metadata_is_an_r4_capability_statement_listing_what_is_served() {
    for s in servers() {
        let r = s.get("/metadata", None);
        assert_eq!(r.status, 200);
        assert!(r
            .header("Content-Type")
            .unwrap()
            .starts_with("application/fhir+json"));
        let cs = r.json();
        assert_eq!(cs["fhirVersion"], "4.0.1");
        let types: Vec<&str> = cs["rest"][0]["resource"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            [
                "Patient",
                "AllergyIntolerance",
                "MedicationStatement",
                "Observation",
                "Flag",
                "Consent",
                "AuditEvent"
            ]
        );
    }
}

#[test]
fn patient_by_nhs_number_is_merged_from_gp_hospital_and_social_care() {
    for s in servers() {
        let t = clinician(s, "RXK");
        let r = s.get(
            &format!("/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{JANE}"),
            Some(&t),
        );
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let b = r.json();
        assert_eq!(b["total"], 1);
        let p = of_type(&b, "Patient")[0];
        assert_eq!(p["id"], JANE);
        assert_eq!(
            p["name"][0]["family"], "Smith",
            "GP demographics come first (the hospital sends SMITH)"
        );
        let tags = ods_tags(p);
        for ods in ["M85001", "RXK", "LA-DUD"] {
            assert!(tags.contains(&ods.to_string()), "{ods} in {tags:?}");
        }
        let nhs_ids = p["identifier"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["system"] == "https://fhir.nhs.uk/Id/nhs-number")
            .count();
        assert_eq!(
            nhs_ids, 1,
            "one NHS number identifier, local identifiers beside it"
        );
        assert!(p["identifier"].as_array().unwrap().len() >= 3);
        assert_eq!(p["generalPractitioner"][0]["identifier"]["value"], "M85001");
        assert_eq!(p["communication"][0]["language"]["coding"][0]["code"], "pa");
    }
}

#[test]
fn patient_by_family_and_birthdate_and_read_by_id() {
    for s in servers() {
        let t = clinician(s, "M85001");
        let b = s
            .get("/Patient?family=smi&birthdate=1970-01-02", Some(&t))
            .json();
        let ids: Vec<&str> = of_type(&b, "Patient")
            .iter()
            .map(|p| p["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, [JANE]);
        let none = s
            .get("/Patient?family=smith&birthdate=1971-01-02", Some(&t))
            .json();
        assert_eq!(none["total"], 0);
        let p = s.get(&format!("/Patient/{JANE}"), Some(&t));
        assert_eq!(p.status, 200);
        assert_eq!(p.json()["birthDate"], "1970-01-02");
    }
}

#[test]
fn patient_without_a_gp_record_is_served_from_other_sources() {
    for s in servers() {
        let r = s.get("/Patient/9990000077", Some(&clinician(s, "TAJ")));
        assert_eq!(r.status, 200);
        let p = r.json();
        assert!(!ods_tags(&p).contains(&"M85001".to_string()));
        assert_eq!(
            p["name"][0]["family"]
                .as_str()
                .map(str::to_uppercase)
                .as_deref(),
            Some("WHITE")
        );
    }
}

#[test]
fn observation_search_filters_pages_counts_and_reads_back() {
    for s in servers() {
        let t = clinician(s, "RXK");
        let (all, total) = s.all_pages(&format!("/Observation?patient={JANE}&_count=2"), &t);
        assert_eq!(total, Some(all.len() as u64));
        assert!(
            all.len() >= 5,
            "GP and hospital observations: {}",
            all.len()
        );
        let mut ids: Vec<&str> = all.iter().map(|o| o["id"].as_str().unwrap()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), all.len(), "no record on two pages");
        let count = s
            .get(
                &format!("/Observation?patient={JANE}&_summary=count"),
                Some(&t),
            )
            .json();
        assert_eq!(count["total"].as_u64(), total);
        assert!(count.get("entry").is_none());

        let potassium = s
            .get(
                &format!("/Observation?patient={JANE}&code=http://loinc.org|2823-3"),
                Some(&t),
            )
            .json();
        let k = of_type(&potassium, "Observation");
        assert_eq!(k.len(), 1);
        assert_eq!(k[0]["valueQuantity"]["value"], 5.9);
        assert_eq!(ods_tags(k[0]), ["RXK"]);

        let lab = s
            .get(
                &format!("/Observation?patient={JANE}&category=laboratory"),
                Some(&t),
            )
            .json();
        assert!(of_type(&lab, "Observation")
            .iter()
            .all(|o| o["category"].to_string().contains("laboratory")));

        let future = s
            .get(
                &format!("/Observation?patient={JANE}&date=gt2100-01-01"),
                Some(&t),
            )
            .json();
        assert_eq!(future["total"], 0);
        let past = s
            .get(
                &format!("/Observation?patient={JANE}&date=le2100-01-01"),
                Some(&t),
            )
            .json();
        assert_eq!(past["total"].as_u64(), total);

        let one = all[0]["id"].as_str().unwrap();
        let read = s.get(&format!("/Observation/{one}"), Some(&t));
        assert_eq!(read.status, 200);
        assert_eq!(read.json(), all[0]);
    }
}

#[test]
fn include_adds_the_patient_once() {
    for s in servers() {
        let b = s
            .get(
                &format!("/AllergyIntolerance?patient={JANE}&_include=AllergyIntolerance:patient"),
                Some(&clinician(s, "M85001")),
            )
            .json();
        let included: Vec<&Value> = b["entry"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["search"]["mode"] == "include")
            .collect();
        assert_eq!(included.len(), 1);
        assert_eq!(included[0]["resource"]["id"], JANE);
        assert!(!of_type(&b, "AllergyIntolerance").is_empty());
    }
}

#[test]
fn medication_allergy_and_flag_searches_use_their_own_parameters() {
    for s in servers() {
        let t = clinician(s, "M85001");
        let active = s
            .get(
                &format!("/MedicationStatement?patient={JANE}&status=active"),
                Some(&t),
            )
            .json();
        assert!(!of_type(&active, "MedicationStatement").is_empty());
        assert!(of_type(&active, "MedicationStatement")
            .iter()
            .all(|m| m["status"] == "active"));
        let allergies = s
            .get(
                &format!("/AllergyIntolerance?patient={JANE}&clinical-status=active"),
                Some(&t),
            )
            .json();
        assert!(of_type(&allergies, "AllergyIntolerance")
            .iter()
            .any(|a| a["code"]["coding"][0]["code"] == "91936005"));
        let flags = s
            .get(&format!("/Flag?patient={JANE}&status=active"), Some(&t))
            .json();
        assert!(of_type(&flags, "Flag").len() >= 2);
    }
}

#[test]
fn everything_puts_patient_first_then_active_alerts_most_urgent_first() {
    for s in servers() {
        let r = s.get(
            &format!("/Patient/{JANE}/$everything"),
            Some(&clinician(s, "RXK")),
        );
        assert_eq!(r.status, 200);
        let b = r.json();
        let resources: Vec<&Value> = b["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| &e["resource"])
            .filter(|r| r["resourceType"] != "OperationOutcome")
            .collect();
        assert_eq!(resources[0]["resourceType"], "Patient");
        let flags: Vec<&Value> = resources
            .iter()
            .skip(1)
            .take_while(|r| r["resourceType"] == "Flag" && r["status"] == "active")
            .copied()
            .collect();
        assert!(flags.len() >= 2, "active alerts follow the Patient");
        let ranks: Vec<u8> = flags
            .iter()
            .map(|f| scr_fhir::alerts::flag_rank(f))
            .collect();
        let mut sorted = ranks.clone();
        sorted.sort();
        assert_eq!(ranks, sorted, "most urgent first");
        assert_eq!(ranks[0], 0, "the household safeguarding alert leads");
        for t in ["AllergyIntolerance", "MedicationStatement", "Observation"] {
            assert!(
                resources.iter().any(|r| r["resourceType"] == t),
                "{t} present"
            );
        }
        assert_eq!(b["total"].as_u64(), Some(resources.len() as u64));
        let ids: Vec<&str> = resources.iter().filter_map(|r| r["id"].as_str()).collect();
        assert!(
            !ids.iter().any(|id| id.ends_with("gp-obs-0001-09")),
            "entered-in-error entries are never shown"
        );
    }
}

#[test]
fn a_source_that_is_down_is_named_in_a_warning_not_an_error() {
    for s in servers() {
        let dir = s.dir.join("down");
        std::fs::create_dir_all(&dir).unwrap();
        let config = std::fs::read_to_string(s.dir.join("scr.toml")).unwrap();
        let port = free_port();
        let config = config
            .replace(&format!("127.0.0.1:{}", s.port), &format!("127.0.0.1:{port}"))
            .replacen("[[sources.gp]]", "[[sources.gp]]\nname = \"gp-down\"\nurl = \"postgres://nobody@127.0.0.1:1/none\"\n\n[[sources.gp]]", 1);
        let path = dir.join("scr.toml");
        // Its own MLLP port: the shared server holds the other.
        let config = config.replace(
            &format!("127.0.0.1:{}\"", s.mllp_port),
            &format!("127.0.0.1:{}\"", free_port()),
        );
        std::fs::write(&path, config).unwrap();
        let down = Server::start("down", dir, port, &path, s.store_url.clone(), 0);
        let r = down.get(
            &format!("/Patient/{JANE}/$everything"),
            Some(&clinician(&down, "M85001")),
        );
        assert_eq!(r.status, 200);
        let b = r.json();
        let warning = b["entry"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["resource"]["resourceType"] == "OperationOutcome")
            .expect("a warning entry");
        assert_eq!(warning["search"]["mode"], "outcome");
        assert!(
            warning["resource"].to_string().contains("gp-down"),
            "{warning}"
        );
        assert!(
            !of_type(&b, "Observation").is_empty(),
            "the other sources still answer"
        );
    }
}

#[test]
fn unmatched_native_rows_are_reported_without_identifiers() {
    for s in servers() {
        // The report is written in the background after start-up.
        let mut log = s.log();
        for _ in 0..100 {
            if log.contains("have no valid NHS number") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
            log = s.log();
        }
        assert!(log.contains("have no valid NHS number"), "{log}");
        assert!(!log.contains("9990000017"), "no NHS number in the log");
    }
}

#[test]
fn r_role_3_social_care_sees_alerts_not_observations() {
    for s in servers() {
        let t = staff_as(s, "sw-dud-0001", "LA-DUD", "R8014", "user/*.rs");
        let r = s.get(&format!("/Observation?patient={JANE}"), Some(&t));
        assert_eq!((r.status, r.issue_code().as_str()), (403, "forbidden"));
        let flags = s.get(&format!("/Flag?patient={JANE}"), Some(&t));
        assert_eq!(flags.status, 200);
        let every = s
            .get(&format!("/Patient/{JANE}/$everything"), Some(&t))
            .json();
        let types: Vec<&str> = every["entry"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["resource"]["resourceType"].as_str())
            .collect();
        assert!(
            types
                .iter()
                .all(|t| matches!(*t, "Patient" | "Flag" | "OperationOutcome")),
            "{types:?}"
        );
    }
}

#[test]
fn r_role_1_scopes_limit_the_types_returned() {
    for s in servers() {
        let t = staff(s, "M85001", "R8000", "user/Patient.rs user/Flag.rs");
        assert_eq!(
            s.get(&format!("/Observation?patient={JANE}"), Some(&t))
                .status,
            403
        );
        let every = s
            .get(&format!("/Patient/{JANE}/$everything"), Some(&t))
            .json();
        assert!(of_type(&every, "Observation").is_empty());
        assert!(!of_type(&every, "Flag").is_empty());
        let unknown_role = staff(s, "M85001", "R9999", "user/*.rs");
        assert_eq!(
            s.get(&format!("/Patient/{JANE}"), Some(&unknown_role))
                .status,
            403
        );
    }
}

#[test]
fn patients_see_their_own_record_only_and_only_at_p9() {
    for s in servers() {
        let own = patient(s, JANE, "P9");
        assert_eq!(
            s.get(&format!("/Patient/{JANE}/$everything"), Some(&own))
                .status,
            200
        );
        let other = s.get("/Patient/9990000026", Some(&own));
        assert_eq!(
            (other.status, other.issue_code().as_str()),
            (403, "forbidden")
        );
        let p5 = patient(s, JANE, "P5");
        assert_eq!(s.get(&format!("/Patient/{JANE}"), Some(&p5)).status, 403);
    }
}

#[test]
fn r_sens_2_sexual_health_results_stay_with_the_trust_that_holds_them() {
    for s in servers() {
        let sam = "9990000042";
        let trust = s
            .all_pages(&format!("/Observation?patient={sam}"), &clinician(s, "RXK"))
            .0;
        let gp = s
            .all_pages(
                &format!("/Observation?patient={sam}"),
                &clinician(s, "M85001"),
            )
            .0;
        // The synthetic GUM (chlamydia, gonorrhoea NAAT) and FERT (FSH, LH) results.
        let sensitive = ["43304-5", "43305-2", "15067-2", "10501-5"];
        let code = |o: &Value| {
            o["code"]["coding"][0]["code"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        };
        let from_rxk = |list: &[Value]| {
            list.iter()
                .filter(|o| ods_tags(o).contains(&"RXK".to_string()))
                .count()
        };
        assert_eq!(
            trust
                .iter()
                .filter(|o| sensitive.contains(&code(o).as_str()))
                .count(),
            4,
            "the trust sees its own sexual health and fertility results"
        );
        assert!(
            gp.iter().all(|o| !sensitive.contains(&code(o).as_str())),
            "nobody else does"
        );
        assert_eq!(
            from_rxk(&gp),
            from_rxk(&trust) - 4,
            "the trust's ordinary results are shared"
        );
        let gp_count = s
            .get(
                &format!("/Observation?patient={sam}&_summary=count"),
                Some(&clinician(s, "M85001")),
            )
            .json();
        assert_eq!(gp_count["total"].as_u64(), Some(gp.len() as u64));
        let hidden = trust
            .iter()
            .find(|o| sensitive.contains(&code(o).as_str()))
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let r = s.get(
            &format!("/Observation/{hidden}"),
            Some(&clinician(s, "M85001")),
        );
        assert_eq!((r.status, r.issue_code().as_str()), (404, "not-found"));
    }
}

#[test]
fn r_sens_3_gp_confidential_entries_are_withheld_from_the_patient_too() {
    for s in servers() {
        let peter = "9990000050";
        let me = patient(s, peter, "P9");
        let own = s.all_pages(&format!("/Observation?patient={peter}"), &me).0;
        assert!(!own.is_empty(), "Peter sees his other results");
        assert!(
            !own.iter()
                .any(|o| o["id"].as_str().unwrap().ends_with("gp-obs-0005-05")),
            "R-SENS-3: the confidential entry is shown only to the recording practice"
        );
        let r = s.get("/Observation/gp.gp-obs-0005-05", Some(&me));
        assert_eq!((r.status, r.issue_code().as_str()), (404, "not-found"));
        let b = s
            .get(&format!("/Patient/{peter}/$everything"), Some(&me))
            .json();
        assert!(
            b.to_string().contains("Some items are withheld"),
            "R-SENS-4: the generic notice, as GP Connect gives it"
        );
    }
}

#[test]
fn r_sens_3_gp_confidential_entries_stay_with_the_practice() {
    for s in servers() {
        let peter = "9990000050";
        let practice = s
            .all_pages(
                &format!("/Observation?patient={peter}"),
                &clinician(s, "M85002"),
            )
            .0;
        // A backend service needs no relationship, but R-SENS binds it like anyone else.
        let elsewhere = system(s, "RXK", "system/*.rs");
        let outside = s
            .all_pages(&format!("/Observation?patient={peter}"), &elsewhere)
            .0;
        let conf = |list: &[Value]| {
            list.iter()
                .any(|o| o["id"].as_str().unwrap().ends_with("gp-obs-0005-05"))
        };
        assert!(conf(&practice));
        assert!(!conf(&outside));
        assert_eq!(
            outside.len() + 1,
            practice.len(),
            "only the confidential entry is withheld"
        );
        let b = s
            .get(&format!("/Patient/{peter}/$everything"), Some(&elsewhere))
            .json();
        let generic = b["entry"].as_array().unwrap().iter().any(|e| {
            e["resource"]["resourceType"] == "OperationOutcome"
                && e["resource"]
                    .to_string()
                    .contains("Some items are withheld")
        });
        assert!(
            generic,
            "R-SENS-4: a generic notice for GP-confidential entries"
        );
        let own = s
            .get(
                &format!("/Patient/{peter}/$everything"),
                Some(&clinician(s, "M85002")),
            )
            .json();
        assert!(!own.to_string().contains("Some items are withheld"));
    }
}

/// A Patient read and search fetch only demographics, relationships and objections
/// (`Wanted::Context`), `$everything` fetches everything: both must show the caller
/// the same Patient, and refuse the same callers (R-LR-1, R-OBJ-2, R-LR-5); a search of one
/// type fetches only that type, and finds what `$everything` holds of it.
#[test]
fn patient_read_and_search_agree_with_the_patient_in_everything() {
    for s in servers() {
        let callers = [
            ("GP M85001", clinician(s, "M85001")),
            ("GP M85002", clinician(s, "M85002")),
            ("acute RXK", clinician(s, "RXK")),
            ("mental health TAJ", clinician(s, "TAJ")),
            ("ambulance RYA", clinician(s, "RYA")),
        ];
        let fixtures = [
            JANE,
            "9990000026",
            "9990000034",
            "9990000042",
            "9990000050",
            "9990000069",
            "9990000077",
        ];
        let mut compared = 0;
        for (who, t) in &callers {
            for nhs in fixtures {
                let everything = s.get(&format!("/Patient/{nhs}/$everything"), Some(t));
                let read = s.get(&format!("/Patient/{nhs}"), Some(t));
                assert_eq!(read.status, everything.status, "{who} reading {nhs}");
                let search = s.get(
                    &format!("/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|{nhs}"),
                    Some(t),
                );
                if everything.status != 200 {
                    assert_eq!(search.status, everything.status, "{who} searching {nhs}");
                    continue;
                }
                let everything = everything.json();
                let from_everything = of_type(&everything, "Patient")[0].clone();
                assert_eq!(read.json(), from_everything, "{who} reading {nhs}");
                // A search of one type fetches only that type: the same records all the same.
                for rt in [
                    "Observation",
                    "AllergyIntolerance",
                    "MedicationStatement",
                    "Flag",
                ] {
                    let ids = |b: &Value| {
                        let mut v: Vec<String> = of_type(b, rt)
                            .iter()
                            .map(|r| r["id"].as_str().unwrap().to_owned())
                            .collect();
                        v.sort();
                        v
                    };
                    let searched = s.get(&format!("/{rt}?patient={nhs}&_count=1000"), Some(t));
                    assert_eq!(searched.status, 200, "{who} searching {rt} of {nhs}");
                    assert_eq!(
                        ids(&searched.json()),
                        ids(&everything),
                        "{who} searching {rt} of {nhs}"
                    );
                }
                let searched = search.json();
                assert_eq!(
                    of_type(&searched, "Patient")[0],
                    &from_everything,
                    "{who} searching {nhs}"
                );
                compared += 1;
            }
        }
        assert!(compared >= 10, "only {compared} visible pairs compared");
    }
}

/// Reads by id, more at once than the GP replica's pool has connections: each read used to hold
/// one connection while waiting for a second, so a full pool deadlocked until the sources timed
/// out (found by the benchmark's `Observation/{id}` workload at 32 connections).
#[test]
fn reads_by_id_at_once_beyond_the_pool_size_all_answer() {
    for s in servers() {
        let t = clinician(s, "M85001");
        let (obs, _) = s.all_pages(&format!("/Observation?patient={JANE}"), &t);
        let id = obs
            .iter()
            .map(|o| o["id"].as_str().unwrap().to_owned())
            .find(|id| id.starts_with("gp."))
            .expect("a GP observation");
        let statuses: Vec<u16> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..32)
                .map(|_| {
                    let (t, id) = (&t, &id);
                    scope.spawn(move || {
                        (0..3)
                            .map(|_| s.get(&format!("/Observation/{id}"), Some(t)).status)
                            .collect::<Vec<u16>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        assert_eq!(statuses.len(), 96);
        assert!(statuses.iter().all(|st| *st == 200), "{statuses:?}");
    }
}

fn with_viewer_origin(config: String) -> String {
    config.replacen(
        "[server]\n",
        "[server]\ncors_origins = [\"https://viewer.example.nhs.uk\"]\n",
        1,
    )
}

#[test]
fn cors_lets_configured_browser_origins_call_the_api_and_no_others() {
    for s in own_servers("cors", with_viewer_origin) {
        let path = format!("/Patient/{JANE}/$everything");
        let preflight = |origin: &str| {
            s.request(
                "OPTIONS",
                &path,
                &[
                    ("Origin", origin),
                    ("Access-Control-Request-Method", "GET"),
                    ("Access-Control-Request-Headers", "authorization"),
                ],
                b"",
            )
        };
        let ok = preflight("https://viewer.example.nhs.uk");
        assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
        assert_eq!(
            ok.header("Access-Control-Allow-Origin"),
            Some("https://viewer.example.nhs.uk")
        );
        assert!(ok
            .header("Access-Control-Allow-Headers")
            .is_some_and(|h| h.to_ascii_lowercase().contains("authorization")));
        let token = clinician(&s, "M85001");
        let auth = format!("Bearer {token}");
        let r = s.request(
            "GET",
            &path,
            &[
                ("Origin", "https://viewer.example.nhs.uk"),
                ("Authorization", &auth),
            ],
            b"",
        );
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("Access-Control-Allow-Origin"),
            Some("https://viewer.example.nhs.uk")
        );
        // Any other origin: the browser gets no permission to read anything.
        let evil = preflight("https://evil.example");
        assert!(evil.header("Access-Control-Allow-Origin").is_none());
        let r = s.request(
            "GET",
            &path,
            &[("Origin", "https://evil.example"), ("Authorization", &auth)],
            b"",
        );
        assert!(r.header("Access-Control-Allow-Origin").is_none());
        // Callers that are not browsers send no Origin and are unaffected.
        assert_eq!(s.get(&path, Some(&token)).status, 200);
    }
}

#[test]
fn responses_are_gzipped_when_the_client_accepts_it_and_only_then() {
    for s in servers() {
        let token = clinician(s, "M85001");
        let auth = format!("Bearer {token}");
        let path = format!("/Patient/{JANE}/$everything");
        let plain = s.request("GET", &path, &[("Authorization", &auth)], b"");
        assert_eq!(plain.status, 200);
        assert!(plain.header("Content-Encoding").is_none());
        let zipped = s.request(
            "GET",
            &path,
            &[("Authorization", &auth), ("Accept-Encoding", "gzip")],
            b"",
        );
        assert_eq!(zipped.status, 200);
        assert_eq!(zipped.header("Content-Encoding"), Some("gzip"));
        // gzip magic, and much smaller than the JSON.
        assert_eq!(zipped.body.get(..2), Some(&[0x1f, 0x8b][..]));
        assert!(
            zipped.body.len() * 3 < plain.body.len(),
            "{} of {} bytes",
            zipped.body.len(),
            plain.body.len()
        );
    }
}
