//! Federation with a plain neighbour (issue 12, `docs/federation.md`): a neighbouring shared care record read live
//! over FHIR R4 REST. The neighbour here is a real `scr` on SQLite ("A"); the asking side ("B")
//! runs on SQLite and on PostgreSQL. This file covers a neighbour read as a plain FHIR server
//! (`auth = "client_credentials"`, a system token): what arrives is labelled with the
//! neighbour's name and passes B's own policy, nothing is fetched for a patient whose objection
//! restricts the caller, and a neighbour that is down is a warning naming it.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use crate::harness::*;

const JANE: &str = "9990000018"; // GP M85001, RXK visit
const KHAN: &str = "9990000026"; // objected in the GP record; M85001, RXK visit
const NEIGHBOUR: &str = "NEIGHBOUR";

/// B's configuration: A as a plain peer, read with the development backend client (which A's
/// demo configuration registers).
fn with_neighbour(a_base: &str) -> impl Fn(String) -> String + '_ {
    move |config: String| {
        let keys = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/dev-issuer");
        format!(
            "{config}\n[[sources.peer]]\nname = \"{NEIGHBOUR}\"\nbase_url = \"{a_base}\"\n\
             auth = \"client_credentials\"\ntoken_url = \"{a_base}/auth/token\"\n\
             client_id = \"dev-backend-client\"\nkey_file = \"{}\"\n\
             key_id = \"scr-dev-client-es384-1\"\ntimeout_ms = 5000\n",
            keys.join("DEVELOPMENT-ONLY-client-es384.pem").display()
        )
    }
}

/// `$everything` of `nhs` on `s`: 200 and valid R4, as a Bundle.
fn everything(s: &Server, nhs: &str, token: &str) -> Value {
    let r = s.get(&format!("/Patient/{nhs}/$everything"), Some(token));
    assert_eq!(
        r.status,
        200,
        "{}: {}",
        s.name,
        String::from_utf8_lossy(&r.body)
    );
    let bundle = r.json();
    check_r4(&bundle);
    bundle
}

fn clinical_ids(bundle: &Value, keep: impl Fn(&Value) -> bool) -> BTreeSet<String> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| &e["resource"])
        .filter(|r| {
            !matches!(
                r["resourceType"].as_str(),
                Some("Patient" | "OperationOutcome")
            )
        })
        .filter(|r| keep(r))
        .map(|r| r["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn federation_a_plain_neighbour_is_read_labelled_restricted_by_objection_and_missed_when_down() {
    let a = Server::sqlite_named("fed-a", 0);
    let edit = with_neighbour(&a.base);
    for b in own_servers_with("fed-b", &edit) {
        // What A gives the neighbour's system token for Jane: every clinical record of hers
        // that A's own policy lets a backend client see.
        let system_at_a = system(&a, "RXK", "system/*.rs");
        let at_a = a.get(&format!("/Patient/{JANE}/$everything"), Some(&system_at_a));
        assert_eq!(at_a.status, 200, "{}", String::from_utf8_lossy(&at_a.body));
        let expected: BTreeSet<String> = clinical_ids(&at_a.json(), |_| true)
            .into_iter()
            .map(|id| format!("{NEIGHBOUR}.{id}"))
            .collect();
        assert!(!expected.is_empty(), "A holds records for Jane");

        // B's clinician at Jane's practice sees B's records and A's, A's labelled with A's
        // name and with their holder's ODS tag kept.
        let clinician = clinician(&b, "M85001");
        let bundle = everything(&b, JANE, &clinician);
        let from_a = clinical_ids(&bundle, |r| tagged(r, NEIGHBOUR));
        assert_eq!(
            from_a, expected,
            "{}: A's records, each once, labelled",
            b.name
        );
        let local = clinical_ids(&bundle, |r| !tagged(r, NEIGHBOUR));
        assert!(
            !local.is_empty(),
            "{}: B's own records are there too",
            b.name
        );
        for e in bundle["entry"].as_array().unwrap() {
            let resource = &e["resource"];
            if tagged(resource, NEIGHBOUR) && resource["resourceType"] != "Patient" {
                assert!(
                    !ods_tags(resource).is_empty(),
                    "the holder's ODS tag is kept"
                );
                assert_eq!(
                    resource["subject"]["reference"]
                        .as_str()
                        .or(resource["patient"]["reference"].as_str()),
                    Some(format!("Patient/{JANE}").as_str()),
                    "A's records point at the patient as B serves them"
                );
            }
        }
        // Bundle.total counts A's records with B's.
        let search = b.get(
            &format!("/AllergyIntolerance?patient={JANE}&_count=100"),
            Some(&clinician),
        );
        assert_eq!(search.status, 200);
        let search = search.json();
        let allergies_from_a = of_type(&search, "AllergyIntolerance")
            .into_iter()
            .filter(|r| tagged(r, NEIGHBOUR))
            .count();
        assert_eq!(
            allergies_from_a,
            expected
                .iter()
                .filter(|id| of_type(&bundle, "AllergyIntolerance")
                    .iter()
                    .any(|r| r["id"] == id.as_str()))
                .count()
        );
        assert_eq!(
            search["total"].as_u64(),
            Some(of_type(&search, "AllergyIntolerance").len() as u64)
        );

        // R-OBJ-2: Khan objected in B's GP record. B's clinician sees only their own
        // organisation's records, so nothing is fetched from the neighbour at all.
        let r = b.get(&format!("/Patient/{KHAN}/$everything"), Some(&clinician));
        assert_eq!(r.status, 200);
        let bundle = r.json();
        assert!(
            clinical_ids(&bundle, |r| tagged(r, NEIGHBOUR)).is_empty(),
            "{}: R-OBJ-2, nothing from the neighbour",
            b.name
        );
        assert!(
            warnings(&bundle).contains("R-OBJ-3"),
            "{}",
            warnings(&bundle)
        );
    }

    // Every B asked A for Jane, never for Khan: A's own audit trail says so.
    let po = staff_as(&a, "po-fed", "M85001", "R0001", "user/AuditEvent.rs");
    for (nhs, asked) in [(JANE, true), (KHAN, false)] {
        let r = a.get(
            &format!("/AuditEvent?patient={nhs}&agent=dev-backend-client&_count=100"),
            Some(&po),
        );
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let found = of_type(&r.json(), "AuditEvent").len();
        assert_eq!(found > 0, asked, "{nhs}: A's audit trail");
    }

    // A down: B still answers with its own records and a warning naming the neighbour.
    a.kill();
    let edit = with_neighbour(&a.base);
    let b = &own_servers_with("fed-b-down", &edit)[0];
    let r = b.get(
        &format!("/Patient/{JANE}/$everything"),
        Some(&clinician(b, "M85001")),
    );
    assert_eq!(r.status, 200);
    let bundle = r.json();
    assert!(clinical_ids(&bundle, |r| tagged(r, NEIGHBOUR)).is_empty());
    assert!(!clinical_ids(&bundle, |_| true).is_empty());
    let w = warnings(&bundle);
    assert!(
        w.contains("neighbouring record NEIGHBOUR is unavailable"),
        "{w}"
    );
}

// ---- two shared care records federated both ways by token exchange -------------------------

const A_NAME: &str = "A-REGION";
const B_NAME: &str = "B-REGION";

fn dev_keys() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/dev-issuer")
}

/// `[[auth.peers]]` trusting `client_id` (signing with the development client key) and
/// `[[sources.peer]]` asking `peer_base` by token exchange as `our_client_id`.
fn federated(
    config: &str,
    trusted_name: &str,
    trusted_client: &str,
    peer_name: &str,
    peer_base: &str,
    our_client: &str,
) -> String {
    let keys = dev_keys();
    format!(
        "{config}\n[[auth.peers]]\nname = \"{trusted_name}\"\nclient_id = \"{trusted_client}\"\n\
         jwks_file = \"{}\"\ntrust_relationships = true\n\
         \n[[sources.peer]]\nname = \"{peer_name}\"\nbase_url = \"{peer_base}\"\nauth = \"exchange\"\n\
         token_url = \"{peer_base}/auth/token\"\nclient_id = \"{our_client}\"\nkey_file = \"{}\"\n\
         key_id = \"scr-dev-client-es384-1\"\ntimeout_ms = 5000\n",
        keys.join("dev-client-jwks.json").display(),
        keys.join("DEVELOPMENT-ONLY-client-es384.pem").display(),
    )
}

fn audit_events(s: &Server, query: &str) -> Vec<Value> {
    let po = staff_as(s, "po-fed", "M85001", "R0001", "user/AuditEvent.rs");
    let r = s.get(&format!("/AuditEvent?{query}&_count=100"), Some(&po));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    of_type(&r.json(), "AuditEvent")
        .into_iter()
        .cloned()
        .collect()
}

/// The resources of a Bundle from A, its Patient aside.
fn records_of_a(bundle: &Value) -> Vec<&Value> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| &e["resource"])
        .filter(|r| tagged(r, A_NAME) && r["resourceType"] != "Patient")
        .collect()
}

/// B's `$everything` of Jane for `asking`, A's part of it exactly `expected` (what A's rules give
/// its own clinician of the same organisation and role).
fn everything_with_a(b: &Server, asking: &str, expected: &BTreeSet<String>) -> Value {
    let bundle = everything(b, JANE, asking);
    assert_eq!(
        &clinical_ids(&bundle, |r| tagged(r, A_NAME)),
        expected,
        "{}: {}",
        b.name,
        warnings(&bundle)
    );
    bundle
}

/// The `federation-request-id` of each of A's AuditEvents of `user` naming B's request
/// `request_id` (there is at least one): B's request whose exchange minted the token it used.
fn exchanged_by(a: &Server, user: &str, request_id: &str) -> Vec<String> {
    let at_a = audit_events(a, &format!("agent={user}"));
    let minted: Vec<String> = at_a
        .iter()
        .filter(|e| audit_detail(e, "request-id") == Some(request_id))
        .map(|e| {
            audit_detail(e, "federation-request-id")
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert!(
        !minted.is_empty(),
        "A names B's request {request_id}: {at_a:?}"
    );
    minted
}

#[test]
fn r_fed_two_records_federated_both_ways_apply_their_own_rules_to_the_asking_user() {
    // A on SQLite. Its [[sources.peer]] points back at each B in turn: A starts naming an
    // address where nothing listens, and is restarted pointing at each B once B is up.
    let nowhere = "http://127.0.0.1:9/fhir";
    let mut a = Server::sqlite_prepared("fed-x-a", 0, |dir| {
        let path = dir.join("scr.toml");
        let config = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            &path,
            federated(&config, B_NAME, "scr-b", B_NAME, nowhere, "scr-a"),
        )
        .unwrap();
    });
    let a_base = a.base.clone();
    let edit = move |config: String| federated(&config, A_NAME, "scr-a", A_NAME, &a_base, "scr-b");
    let mut pointing_at = nowhere.to_owned();
    let bs = own_servers_with("fed-x-b", &edit);
    for b in &bs {
        let config = a.dir.join("scr.toml");
        let text = std::fs::read_to_string(&config).unwrap();
        std::fs::write(&config, text.replace(&pointing_at, &b.base)).unwrap();
        pointing_at = b.base.clone();
        a.kill();
        a = a.restart();
        let user = format!("fed-user-{}-{}", std::process::id(), now());
        let asking = staff_as(b, &user, "RXK", "R8000", "user/*.rs");
        // What A's own rules give an RXK clinician there.
        let local_at_a = a.get(
            &format!("/Patient/{JANE}/$everything"),
            Some(&clinician(&a, "RXK")),
        );
        assert_eq!(local_at_a.status, 200);
        // A's own clinician also gets B's records, by federation the other way: those are B's,
        // not A's, and are not what B asks A for.
        let local_at_a = local_at_a.json();
        assert!(
            !clinical_ids(&local_at_a, |r| tagged(r, B_NAME)).is_empty(),
            "both ways: A's clinician sees B's records too"
        );
        let expected: BTreeSet<String> = clinical_ids(&local_at_a, |r| !tagged(r, B_NAME))
            .into_iter()
            .map(|id| format!("{A_NAME}.{id}"))
            .collect();

        // R-FED-4: the neighbour applied its rules to this user, exactly as to its own
        // clinician of the same organisation and role.
        let bundle = everything_with_a(b, &asking, &expected);
        // Alerts first across both records: every Flag comes before every other record.
        let kinds: Vec<&str> = bundle["entry"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["resource"]["resourceType"].as_str())
            .filter(|t| !matches!(*t, "Patient" | "OperationOutcome"))
            .collect();
        let first_other = kinds
            .iter()
            .position(|t| *t != "Flag")
            .unwrap_or(kinds.len());
        assert!(
            kinds[first_other..].iter().all(|t| *t != "Flag"),
            "{}: alerts first: {kinds:?}",
            b.name
        );

        // A's records read by id through B, as a Bundle entry's fullUrl names them: each as
        // the Bundle gave it. An id B never served, and a caller who may not open Jane's
        // record, get 404 as for nothing at all.
        let of_a = records_of_a(&bundle);
        assert!(!of_a.is_empty(), "{}", b.name);
        let path_of = |r: &Value| {
            format!(
                "/{}/{}",
                r["resourceType"].as_str().unwrap_or_default(),
                r["id"].as_str().unwrap_or_default()
            )
        };
        for r in &of_a {
            let got = b.get(&path_of(r), Some(&asking));
            let body = String::from_utf8_lossy(&got.body);
            assert_eq!(got.status, 200, "{}: {}: {body}", b.name, path_of(r));
            assert_eq!(got.json()["id"], r["id"], "{body}");
        }
        let stranger = staff_as(b, &unique_id("fed-stranger"), "RYA", "R8000", "user/*.rs");
        assert_eq!(b.get(&path_of(of_a[0]), Some(&stranger)).status, 404);
        let never = format!(
            "/{}/{A_NAME}.never-served",
            of_a[0]["resourceType"].as_str().unwrap_or_default()
        );
        assert_eq!(b.get(&never, Some(&asking)).status, 404);

        // R-FED-5: A's audit trail names B's user, their organisation and the peer.
        let at_a = audit_events(&a, &format!("agent={user}"));
        assert!(!at_a.is_empty(), "{}: A audited the access", b.name);
        let text = serde_json::to_string(&at_a).unwrap();
        assert!(text.contains(B_NAME) && text.contains("RXK"), "{text}");
        // The user's next request for the same patient reuses the token exchanged for the
        // first, and A names each of B's requests by B's own id (X-Request-Id, B's Bundle.id):
        // `request-id` is the asking request, `federation-request-id` the one whose exchange
        // minted the token.
        let again = everything_with_a(b, &asking, &expected);
        let first_id = bundle["id"].as_str().unwrap_or_default();
        for minted_by in exchanged_by(&a, &user, first_id)
            .into_iter()
            .chain(exchanged_by(
                &a,
                &user,
                again["id"].as_str().unwrap_or_default(),
            ))
        {
            assert_eq!(minted_by, first_id, "{}", b.name);
        }
        // A restarts with a new signing key: the token B kept no longer verifies there. A
        // refuses it once (401), B drops it and exchanges afresh, and the user notices nothing.
        a.kill();
        std::fs::remove_file(a.dir.join("token-signing-key.pem")).expect("A's signing key");
        a = a.restart();
        let fresh = everything_with_a(b, &asking, &expected);
        let fresh_id = fresh["id"].as_str().unwrap_or_default();
        for minted_by in exchanged_by(&a, &user, fresh_id) {
            assert_eq!(minted_by, fresh_id, "{}", b.name);
        }

        // Break glass here travels as break glass there, audited as such on both sides: an
        // ambulance crew member with no relationship with Jane in either record.
        let crew_user = format!("fed-crew-{}-{}", std::process::id(), now());
        let crew = staff_as(b, &crew_user, "RYA", "R8000", "user/*.rs");
        let reason = "Unconscious at roadside, need allergies";
        let body = serde_json::json!({
            "resourceType": "Parameters",
            "parameter": [{ "name": "purpose", "valueCode": "ETREAT" }, { "name": "reason", "valueString": reason }],
        });
        let auth = format!("Bearer {crew}");
        let r = b.request(
            "POST",
            &format!("/Patient/{JANE}/$break-glass"),
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/fhir+json"),
            ],
            body.to_string().as_bytes(),
        );
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let bundle = everything(b, JANE, &crew);
        assert!(
            !clinical_ids(&bundle, |r| tagged(r, A_NAME)).is_empty(),
            "{}: A answers the crew under break glass: {}",
            b.name,
            warnings(&bundle)
        );
        for (side, server) in [("A", &a), ("B", b)] {
            let flagged = audit_events(server, &format!("break-glass=true&agent={crew_user}"));
            assert!(
                flagged.iter().any(|e| {
                    e["purposeOfEvent"][0]["coding"][0]["code"] == "ETREAT"
                        && e.to_string().contains(reason)
                }),
                "{}: {side} audits the access as break glass with its reason: {flagged:?}",
                b.name
            );
        }

        // R-FED-2: A never asked B back for a request that came from B.
        let back_at_b = audit_events(b, &format!("agent={user}"));
        let text = serde_json::to_string(&back_at_b).unwrap();
        assert!(!text.contains(A_NAME), "{}: no loop: {text}", b.name);
    }

    // R-FED-4, objections across the hop: Jane objects at A only (a Consent registered there).
    // B knows of no objection and asks; A withholds its records from B's user, and its
    // objection notice reaches B's Bundle, named.
    let b = bs.last().unwrap();
    let receptionist = staff(&a, "M85001", "R8008", "user/*.rs user/Consent.c");
    let objection = serde_json::json!({
        "resourceType": "Consent",
        "status": "active",
        "scope": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy" }] },
        "category": [{ "coding": [{ "system": "http://loinc.org", "code": "59284-0" }] }],
        "patient": { "reference": format!("Patient/{JANE}") },
        "policyRule": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT" }] },
        "provision": { "type": "deny" },
    });
    let auth = format!("Bearer {receptionist}");
    let r = a.request(
        "POST",
        "/Consent",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/fhir+json"),
        ],
        objection.to_string().as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let asking = staff(b, "RXK", "R8000", "user/*.rs");
    let r = b.get(&format!("/Patient/{JANE}/$everything"), Some(&asking));
    assert_eq!(r.status, 200);
    let bundle = r.json();
    let from_a = records_of_a(&bundle);
    // A counts no organisation as a federated caller's own (its code is only asserted by the
    // neighbour), so under A's objection nothing of A's leaves, RXK's included.
    assert!(from_a.is_empty(), "R-OBJ-2 at A: {from_a:?}");
    assert!(
        !clinical_ids(&bundle, |r| !tagged(r, A_NAME)).is_empty(),
        "B's own records are still there"
    );
    let w = warnings(&bundle);
    assert!(
        w.contains(&format!("{A_NAME}: ")) && w.contains("R-OBJ-3"),
        "{w}"
    );
}
