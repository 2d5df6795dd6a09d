//! Federation, the answering side (docs/federation.md, R-FED-1..5): the test plays the asking
//! record B by hand. It makes its own ES384 key pair, writes B's JWKS for `[[auth.peers]]`, signs
//! an actor token (B's client assertion) and a subject token (B's user's context), exchanges them
//! at the token endpoint over HTTP and reads the record with the token it gets.

use std::path::PathBuf;
use std::sync::OnceLock;

use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::PKey;
use serde_json::{json, Value};

use crate::harness::*;

const JANE: &str = "9990000018";
const KHAN: &str = "9990000026";
const SAM: &str = "9990000042";

/// B, trusted for relationships.
const TRUSTED: (&str, &str) = ("BlackCountrySCR", "scr-b");
/// Another neighbour, not trusted for relationships.
const UNTRUSTED: (&str, &str) = ("ShropshireSCR", "scr-c");
const KID: &str = "peer-es384-1";
/// The neighbour's users act for an organisation this record holds nothing of.
const PEER_ORG: &str = "RRK";

/// The synthetic sexual health (GUM) and fertility (FERT) results held by RXK for Sam.
const SENSITIVE_CODES: [&str; 4] = ["43304-5", "43305-2", "15067-2", "10501-5"];

struct PeerKeys {
    private_pem: Vec<u8>,
    jwks_file: PathBuf,
}

/// B's key pair, made once per test run, and its public JWKS written where the configuration
/// of the servers names it.
fn peer_keys() -> &'static PeerKeys {
    static KEYS: OnceLock<PeerKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let group = EcGroup::from_curve_name(Nid::SECP384R1).expect("P-384");
        let key = EcKey::generate(&group).expect("EC key");
        let mut ctx = BigNumContext::new().expect("ctx");
        let (mut x, mut y) = (BigNum::new().expect("x"), BigNum::new().expect("y"));
        key.public_key()
            .affine_coordinates(&group, &mut x, &mut y, &mut ctx)
            .expect("coordinates");
        let b64 = |n: &BigNum| {
            base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                n.to_vec_padded(48).expect("pad"),
            )
        };
        let jwks = json!({ "keys": [{
            "kty": "EC", "crv": "P-384", "kid": KID, "use": "sig", "alg": "ES384",
            "x": b64(&x), "y": b64(&y),
        }]});
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("federation-peer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("peer folder");
        let jwks_file = dir.join("peer-jwks.json");
        std::fs::write(&jwks_file, jwks.to_string()).expect("peer JWKS");
        PeerKeys {
            private_pem: PKey::from_ec_key(key)
                .and_then(|k| k.private_key_to_pem_pkcs8())
                .expect("PEM"),
            jwks_file,
        }
    })
}

/// The two neighbours, as `[[auth.peers]]` of the servers under test.
fn with_peers(config: String) -> String {
    let jwks = peer_keys().jwks_file.display().to_string();
    format!(
        "{config}\n[[auth.peers]]\nname = \"{}\"\nclient_id = \"{}\"\njwks_file = \"{jwks}\"\ntrust_relationships = true\n\n[[auth.peers]]\nname = \"{}\"\nclient_id = \"{}\"\njwks_file = \"{jwks}\"\n",
        TRUSTED.0, TRUSTED.1, UNTRUSTED.0, UNTRUSTED.1
    )
}

fn token_url(s: &Server) -> String {
    format!("{}/auth/token", s.base)
}

fn sign_es384(claims: &Value) -> String {
    scr_auth::dev::sign(claims, "ES384", &peer_keys().private_pem, KID).expect("sign")
}

/// B's client assertion (RFC 7523).
fn actor_token(s: &Server, client_id: &str) -> String {
    sign_es384(&json!({
        "iss": client_id, "sub": client_id, "aud": token_url(s),
        "iat": now(), "exp": now() + 120, "jti": unique_id("actor"),
    }))
}

/// B's user: a clinician at `PEER_ORG`, asking for `patient`.
fn user_context(s: &Server, client_id: &str, user: &str, patient: &str) -> Value {
    json!({
        "iss": client_id, "aud": token_url(s), "iat": now(), "exp": now() + 120,
        "jti": unique_id("subject"),
        "sub": user, "name": "Dr Asha Patel", "org_code": PEER_ORG, "role_code": "R8000",
        "purpose_of_use": "TREAT", "patient": patient, "request_id": unique_id("b-request"),
        "relationship": { "rule": "R-LR-2", "org": PEER_ORG },
    })
}

fn urlencode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn exchange_form(actor: &str, subject: &str) -> String {
    let jwt = "urn:ietf:params:oauth:token-type:jwt";
    [
        (
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        ),
        ("actor_token", actor),
        ("actor_token_type", jwt),
        ("subject_token", subject),
        ("subject_token_type", jwt),
        ("scope", "user/*.rs"),
    ]
    .iter()
    .map(|(k, v)| format!("{k}={}", urlencode(v)))
    .collect::<Vec<_>>()
    .join("&")
}

fn post_form(s: &Server, form: &str) -> Response {
    s.request(
        "POST",
        "/auth/token",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        form.as_bytes(),
    )
}

fn oauth_error(r: &Response) -> String {
    serde_json::from_slice::<Value>(&r.body).expect("JSON")["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Exchanges B's tokens for an access token here; panics unless it is granted.
fn exchange(s: &Server, client_id: &str, subject: &Value) -> String {
    let r = post_form(
        s,
        &exchange_form(&actor_token(s, client_id), &sign_es384(subject)),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("Cache-Control"), Some("no-store"));
    let body: Value = serde_json::from_slice(&r.body).expect("JSON");
    assert_eq!(
        body["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "user/*.rs");
    let expires_in = body["expires_in"].as_i64().expect("expires_in");
    assert!((1..=300).contains(&expires_in), "{expires_in}");
    body["access_token"].as_str().expect("token").to_owned()
}

fn everything(s: &Server, nhs: &str, token: &str) -> Response {
    s.get(&format!("/Patient/{nhs}/$everything"), Some(token))
}

fn codes(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["resource"]["code"]["coding"][0]["code"].as_str())
        .map(str::to_owned)
        .collect()
}

#[derive(diesel::QueryableByName)]
struct AuditRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    resource: String,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    break_glass: i32,
}

/// The AuditEvents of `user`'s accesses, oldest first, with their break-glass flag.
fn audited(s: &Server, user: &str) -> Vec<(Value, bool)> {
    use diesel::RunQueryDsl;
    let rows: Vec<AuditRow> = diesel::sql_query(format!(
        "SELECT resource, break_glass FROM audit_event WHERE agent_user = '{user}' ORDER BY seq"
    ))
    .load(&mut store_connection(s))
    .expect("audit rows");
    rows.into_iter()
        .map(|r| {
            (
                serde_json::from_str(&r.resource).expect("JSON"),
                r.break_glass == 1,
            )
        })
        .collect()
}

#[test]
fn r_fed_1_to_5_a_trusted_peers_user_reads_what_the_rules_allow_and_is_audited() {
    for s in own_servers("federation", with_peers) {
        let smart: Value =
            serde_json::from_slice(&s.get("/.well-known/smart-configuration", None).body)
                .expect("JSON");
        assert!(smart["grant_types_supported"]
            .as_array()
            .expect("grant types")
            .iter()
            .any(|g| g == "urn:ietf:params:oauth:grant-type:token-exchange"));

        // R-FED-1, R-FED-3: the trusted peer's asserted relationship opens Jane's record.
        let user = unique_id("fed-user");
        let subject = user_context(&s, TRUSTED.1, &user, JANE);
        let request_id = subject["request_id"].as_str().expect("id").to_owned();
        let token = exchange(&s, TRUSTED.1, &subject);
        let r = everything(&s, JANE, &token);
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let jane = r.json();
        let shared = holders(&jane);
        assert!(
            shared.len() >= 2 && !shared.contains(&PEER_ORG.to_owned()),
            "the records of this region's organisations: {shared:?}"
        );
        assert!(!of_type(&jane, "Observation").is_empty());

        // R-FED-2: another patient (one this record knows) is refused, naming the rule.
        let r = everything(&s, KHAN, &token);
        assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.issue_code(), "forbidden");
        assert!(
            String::from_utf8_lossy(&r.body).contains("R-FED-2"),
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        let r = s.get(&format!("/Observation?patient={SAM}"), Some(&token));
        assert_eq!(r.status, 403);
        // And it writes nothing.
        let auth = format!("Bearer {token}");
        let flag = json!({"resourceType": "Flag", "status": "active",
            "category": [{"coding": [{"system": "https://scr.example.nhs.uk/CodeSystem/alert-category", "code": "other"}]}],
            "code": {"text": "Federated write"}, "subject": {"reference": format!("Patient/{JANE}")},
            "period": {"start": "2026-11-25"}});
        let r = s.request(
            "POST",
            "/Flag",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/fhir+json"),
            ],
            flag.to_string().as_bytes(),
        );
        assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));

        // R-FED-5: the access's AuditEvent names the user, their organisation and role, the
        // purpose of use, the peer and its request id.
        let events = audited(&s, &user);
        let (access, break_glass) = events
            .iter()
            .find(|(e, _)| e["outcome"] == "0")
            .expect("the access is audited");
        assert!(!*break_glass);
        let text = access.to_string();
        assert!(
            text.contains(&user) && text.contains("Dr Asha Patel"),
            "{text}"
        );
        assert!(text.contains(PEER_ORG) && text.contains("R8000"), "{text}");
        assert_eq!(
            access["purposeOfEvent"][0]["coding"][0]["code"], "TREAT",
            "{text}"
        );
        assert_eq!(audit_detail(access, "federation-peer"), Some(TRUSTED.0));
        assert_eq!(
            audit_detail(access, "federation-request-id"),
            Some(request_id.as_str())
        );
        assert_eq!(audit_detail(access, "decided-by"), Some("R-FED-3"));
        let refusal = events
            .iter()
            .find(|(e, _)| e["outcome"] == "4")
            .expect("the refusal is audited");
        assert!(refusal.0.to_string().contains("R-FED-2"));

        // $explain shows the R-FED rules deciding for a described user of the neighbour.
        let officer = staff(&s, "M85001", "R0001", "user/AuditEvent.rs");
        let described = [
            ("user", user.as_str()),
            ("organization", PEER_ORG),
            ("role", "R8000"),
            ("peer", TRUSTED.0),
            ("relationship-rule", "R-LR-2"),
            ("relationship-org", PEER_ORG),
        ];
        let r = crate::explain::explain(&s, &officer, JANE, &described);
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let p = r.json();
        assert_eq!(crate::explain::param(&p, "rule"), Some("R-FED-3"));
        let rules: Vec<String> = crate::explain::evaluations(&p)
            .into_iter()
            .map(|(rule, _, _)| rule)
            .collect();
        assert!(
            rules.iter().any(|r| r == "R-FED-2") && rules.iter().any(|r| r == "R-FED-4"),
            "{rules:?}"
        );
        let untrusted: Vec<(&str, &str)> = described
            .iter()
            .map(|&(k, v)| {
                if k == "peer" {
                    (k, UNTRUSTED.0)
                } else {
                    (k, v)
                }
            })
            .collect();
        let r = crate::explain::explain(&s, &officer, JANE, &untrusted);
        assert_eq!(crate::explain::param(&r.json(), "rule"), Some("R-LR-5"));

        // A patient sees the access, without the user's name (R-AUD-5).
        let own = s.get("/AuditEvent?_count=500", Some(&patient(&s, JANE, "P9")));
        assert_eq!(own.status, 200);
        let own = String::from_utf8_lossy(&own.body).into_owned();
        assert!(
            own.contains(TRUSTED.0),
            "the patient sees where the access came from"
        );
        assert!(!own.contains(&user) && !own.contains("Dr Asha Patel"));
    }
}

#[test]
fn r_fed_4_objection_and_sensitivity_apply_to_the_peers_user() {
    for s in own_servers("federation-obj", with_peers) {
        // Khan objected: the user's organisation holds nothing here, so nothing is shared,
        // and the Bundle says an objection limits it.
        let user = unique_id("fed-obj");
        let token = exchange(&s, TRUSTED.1, &user_context(&s, TRUSTED.1, &user, KHAN));
        let r = everything(&s, KHAN, &token);
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let khan = r.json();
        assert_eq!(holders(&khan), Vec::<String>::new());
        assert!(of_type(&khan, "Observation").is_empty());
        assert!(warnings(&khan).contains("R-OBJ-3"), "{}", warnings(&khan));
        // Without the objection the same user sees other organisations' records: the check
        // above can fail.
        let jane_token = exchange(&s, TRUSTED.1, &user_context(&s, TRUSTED.1, &user, JANE));
        assert!(!holders(&everything(&s, JANE, &jane_token).json()).is_empty());

        // Sam's sexual health and fertility results stay with RXK (R-SENS-1, R-SENS-2).
        let local = s
            .all_pages(
                &format!("/Observation?patient={SAM}"),
                &clinician(&s, "RXK"),
            )
            .0;
        let held: Vec<&Value> = local
            .iter()
            .filter(|o| {
                SENSITIVE_CODES.contains(&o["code"]["coding"][0]["code"].as_str().unwrap_or(""))
            })
            .collect();
        assert!(!held.is_empty(), "the fixture holds sensitive results");
        let token = exchange(&s, TRUSTED.1, &user_context(&s, TRUSTED.1, &user, SAM));
        let r = everything(&s, SAM, &token);
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let sam = r.json();
        assert!(!of_type(&sam, "Observation").is_empty());
        let seen = codes(&sam);
        assert!(
            SENSITIVE_CODES
                .iter()
                .all(|c| !seen.contains(&(*c).to_owned())),
            "{seen:?}"
        );
    }
}

#[test]
fn r_fed_3_an_untrusted_peers_relationship_does_not_count_but_break_glass_does() {
    for s in own_servers("federation-trust", with_peers) {
        let user = unique_id("fed-untrusted");
        let token = exchange(&s, UNTRUSTED.1, &user_context(&s, UNTRUSTED.1, &user, JANE));
        let r = everything(&s, JANE, &token);
        assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.issue_code(), "forbidden");
        assert!(String::from_utf8_lossy(&r.body).contains("R-LR-5"));

        // Break glass travels as the purpose of use, with the reason, and is audited as such.
        let mut btg = user_context(&s, UNTRUSTED.1, &user, JANE);
        btg["purpose_of_use"] = "BTG".into();
        btg["reason"] = "Unconscious in ED, no history available".into();
        btg.as_object_mut().expect("claims").remove("relationship");
        let token = exchange(&s, UNTRUSTED.1, &btg);
        let r = everything(&s, JANE, &token);
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let events = audited(&s, &user);
        let (access, break_glass) = events
            .iter()
            .find(|(e, _)| e["outcome"] == "0")
            .expect("the access is audited");
        assert!(*break_glass, "audited as break glass");
        assert_eq!(access["purposeOfEvent"][0]["coding"][0]["code"], "BTG");
        assert_eq!(
            audit_detail(access, "break-glass-reason"),
            Some("Unconscious in ED, no history available")
        );
        assert_eq!(audit_detail(access, "federation-peer"), Some(UNTRUSTED.0));
        // Privacy officers find it among break-glass accesses.
        let po = staff_as(&s, "po-fed", "M85001", "R0001", "user/AuditEvent.rs");
        let r = s.get(
            &format!("/AuditEvent?break-glass=true&agent={user}"),
            Some(&po),
        );
        assert_eq!(r.status, 200);
        assert_eq!(of_type(&r.json(), "AuditEvent").len(), 1);

        // Break glass without a reason is no grant.
        btg.as_object_mut().expect("claims").remove("reason");
        btg["jti"] = unique_id("subject").into();
        let r = post_form(
            &s,
            &exchange_form(&actor_token(&s, UNTRUSTED.1), &sign_es384(&btg)),
        );
        assert_eq!((r.status, oauth_error(&r).as_str()), (400, "invalid_grant"));
    }
}

#[test]
fn r_fed_1_only_configured_peers_with_their_own_keys_and_fresh_tokens_exchange() {
    for s in own_servers("federation-refuse", with_peers) {
        let user = unique_id("fed-refused");
        // An unconfigured client.
        let subject = user_context(&s, "scr-z", &user, JANE);
        let r = post_form(
            &s,
            &exchange_form(&actor_token(&s, "scr-z"), &sign_es384(&subject)),
        );
        assert_eq!(
            (r.status, oauth_error(&r).as_str()),
            (401, "invalid_client"),
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        // A configured client id whose tokens are signed with another key (the development
        // client's, which the server knows for another client).
        let forged_actor = scr_auth::dev::sign(
            &json!({"iss": TRUSTED.1, "sub": TRUSTED.1, "aud": token_url(&s),
                "iat": now(), "exp": now() + 60, "jti": unique_id("actor")}),
            "ES384",
            scr_auth::dev::dev_client_private_key_pem(),
            KID,
        )
        .expect("sign");
        let subject = user_context(&s, TRUSTED.1, &user, JANE);
        let r = post_form(&s, &exchange_form(&forged_actor, &sign_es384(&subject)));
        assert_eq!(
            (r.status, oauth_error(&r).as_str()),
            (401, "invalid_client")
        );
        // A reused pair of tokens: the first exchange is granted, the second refused.
        let form = exchange_form(&actor_token(&s, TRUSTED.1), &sign_es384(&subject));
        assert_eq!(post_form(&s, &form).status, 200);
        let replay = post_form(&s, &form);
        assert_eq!(
            (replay.status, oauth_error(&replay).as_str()),
            (400, "invalid_grant")
        );
        // A subject token living longer than five minutes.
        let mut long = user_context(&s, TRUSTED.1, &user, JANE);
        long["exp"] = (now() + 900).into();
        let r = post_form(
            &s,
            &exchange_form(&actor_token(&s, TRUSTED.1), &sign_es384(&long)),
        );
        assert_eq!((r.status, oauth_error(&r).as_str()), (400, "invalid_grant"));
        // A token carrying scr_federation that this server did not mint is no access token,
        // even from an issuer it trusts (the development issuer).
        let mut claims = clinician_claims(&s, PEER_ORG);
        claims["name"] = "Dr Asha Patel".into();
        claims["act"] = json!({ "sub": TRUSTED.1 });
        claims["scr_federation"] = json!({
            "peer": TRUSTED.0, "org_code": PEER_ORG, "role_code": "R8000",
            "purpose_of_use": "TREAT", "patient": JANE, "request_id": "forged",
            "relationship": { "rule": "R-LR-2", "org": PEER_ORG },
        });
        let r = everything(&s, JANE, &signed(&claims));
        assert_eq!(r.status, 401, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.issue_code(), "login");
    }
}
