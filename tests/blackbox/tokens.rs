//! tokens.md: every failure is a 401 with an OperationOutcome and `WWW-Authenticate`.

use crate::harness::*;

fn assert_401(server: &Server, token: Option<&str>) {
    let r = server.get("/Patient/9990000018", token);
    assert_eq!(r.status, 401, "{}", String::from_utf8_lossy(&r.body));
    assert!(
        r.header("WWW-Authenticate")
            .is_some_and(|h| h.starts_with("Bearer")),
        "{:?}",
        r.headers
    );
    assert_eq!(r.issue_code(), "login");
}

#[test]
fn no_token_is_401_with_www_authenticate() {
    for s in servers() {
        assert_401(s, None);
    }
}

#[test]
fn expired_token_is_401() {
    for s in servers() {
        let mut claims = clinician_claims(s, "M85001");
        claims["iat"] = (now() - 7200).into();
        claims["exp"] = (now() - 3600).into();
        assert_401(s, Some(&signed(&claims)));
    }
}

#[test]
fn token_signed_by_an_unknown_key_is_401() {
    for s in servers() {
        let key = openssl::rsa::Rsa::generate(2048).unwrap();
        let pem = key.private_key_to_pem().unwrap();
        let token =
            scr_auth::dev::sign_rs256(&clinician_claims(s, "M85001"), &pem, scr_auth::dev::DEV_KID)
                .unwrap();
        assert_401(s, Some(&token));
    }
}

#[test]
fn alg_none_and_hs256_are_401() {
    use base64::Engine;
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    for s in servers() {
        let claims = clinician_claims(s, "M85001");
        let none = format!(
            "{}.{}.",
            b64(&serde_json::json!({"alg": "none", "typ": "JWT"})),
            b64(&claims)
        );
        assert_401(s, Some(&none));
        let hs = format!(
            "{}.{}.c2lnbmF0dXJl",
            b64(&serde_json::json!({"alg": "HS256", "kid": scr_auth::dev::DEV_KID})),
            b64(&claims)
        );
        assert_401(s, Some(&hs));
    }
}

#[test]
fn wrong_audience_is_401() {
    for s in servers() {
        let mut claims = clinician_claims(s, "M85001");
        claims["aud"] = "https://elsewhere.example/fhir".into();
        assert_401(s, Some(&signed(&claims)));
    }
}

#[test]
fn metadata_and_smart_configuration_need_no_token() {
    for s in servers() {
        assert_eq!(s.get("/metadata", None).status, 200);
        let smart = s.get("/.well-known/smart-configuration", None);
        assert_eq!(smart.status, 200);
        let v: serde_json::Value = serde_json::from_slice(&smart.body).unwrap();
        assert!(v["capabilities"].as_array().is_some_and(|c| !c.is_empty()));
        // Issue 13 item 7: nothing advertised that does not exist (a launch context only with
        // an authorization endpoint, which the test servers have: they register the viewer
        // app), and the write and audit scopes that do.
        let caps = v["capabilities"].to_string();
        assert_eq!(
            caps.contains("context-ehr"),
            v["authorization_endpoint"].is_string(),
            "{caps}"
        );
        let scopes = v["scopes_supported"].to_string();
        for scope in ["user/Flag.cu", "patient/Flag.cu", "user/AuditEvent.rs"] {
            assert!(scopes.contains(scope), "{scope} in {scopes}");
        }
    }
}

fn token_request(s: &Server, form: &str) -> Response {
    s.request(
        "POST",
        "/auth/token",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        form.as_bytes(),
    )
}

fn assertion(s: &Server, lifetime: i64) -> String {
    let url = format!("{}/auth/token", s.base);
    scr_auth::dev::client_assertion(
        scr_auth::dev::DEV_CLIENT_ID,
        &url,
        now(),
        lifetime,
        scr_auth::dev::dev_client_private_key_pem(),
        "ES384",
        scr_auth::dev::DEV_CLIENT_KID,
    )
    .unwrap()
}

fn form(assertion: &str, scope: &str) -> String {
    format!(
        "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={assertion}&scope={}",
        scope.replace('/', "%2F").replace('*', "%2A")
    )
}

#[test]
fn backend_services_get_a_token_bound_by_objections_and_sensitivity() {
    for s in servers() {
        let smart: serde_json::Value =
            serde_json::from_slice(&s.get("/.well-known/smart-configuration", None).body).unwrap();
        assert_eq!(smart["token_endpoint"], format!("{}/auth/token", s.base));
        let r = token_request(s, &form(&assertion(s, 120), "system/*.rs"));
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.header("Cache-Control"), Some("no-store"));
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        let token = body["access_token"].as_str().unwrap().to_owned();
        assert_eq!(body["scope"], "system/*.rs");
        // R-OBJ-2 binds backend services: the objector's record shows only the client's
        // organisation's (RXK) records.
        let khan = s
            .get("/Patient/9990000026/$everything", Some(&token))
            .json();
        let tags: Vec<String> = khan["entry"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["search"]["mode"] == "match")
            .flat_map(|e| ods_tags(&e["resource"]))
            .collect();
        assert!(
            !tags.is_empty() && tags.iter().all(|t| t == "RXK"),
            "{tags:?}"
        );
    }
}

#[test]
fn token_endpoint_refuses_replays_long_assertions_unknown_scopes_and_bad_grants() {
    for s in servers() {
        let once = assertion(s, 120);
        assert_eq!(token_request(s, &form(&once, "system/*.rs")).status, 200);
        let replay = token_request(s, &form(&once, "system/*.rs"));
        let err = |r: &Response| {
            serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["error"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(
            (replay.status, err(&replay).as_str()),
            (400, "invalid_grant"),
            "a reused jti is refused"
        );
        let long = token_request(s, &form(&assertion(s, 900), "system/*.rs"));
        assert_eq!((long.status, err(&long).as_str()), (401, "invalid_client"));
        let scope = token_request(s, &form(&assertion(s, 60), "user/*.rs"));
        assert_eq!((scope.status, err(&scope).as_str()), (400, "invalid_scope"));
        let grant = token_request(
            s,
            &form(&assertion(s, 60), "").replace("client_credentials", "password"),
        );
        assert_eq!(err(&grant), "unsupported_grant_type");
        // An access token signed by the client itself (not the server) is no access token.
        let claims = serde_json::json!({"iss": "dev-backend-client", "sub": "dev-backend-client", "aud": s.base, "exp": now() + 60, "iat": now(), "jti": "x", "scope": "system/*.rs"});
        let forged = scr_auth::dev::sign(
            &claims,
            "ES384",
            scr_auth::dev::dev_client_private_key_pem(),
            scr_auth::dev::DEV_CLIENT_KID,
        )
        .unwrap();
        assert_eq!(s.get("/Patient/9990000018", Some(&forged)).status, 401);
    }
}

#[test]
fn item8_an_issuer_vouches_only_for_its_caller_kinds_organisations_and_token_lifetime() {
    let jwks = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/dev-issuer/dev-only-jwks.json");
    let jwks = jwks.display().to_string();
    let s = Server::sqlite_prepared("issuer-limits", 0, |dir| {
        let path = dir.join("scr.toml");
        let mut config = std::fs::read_to_string(&path).unwrap();
        config.push_str(&format!(
            r#"
[[auth.issuers]]
iss = "https://login.test.invalid"
jwks_file = "{jwks}"
caller_kinds = ["patient"]
[[auth.issuers]]
iss = "https://trust.test.invalid"
jwks_file = "{jwks}"
caller_kinds = ["staff"]
organisations = ["RXK"]
max_token_lifetime_seconds = 900
"#
        ));
        std::fs::write(&path, config).unwrap();
    });
    let from = |iss: &str, mut claims: serde_json::Value| {
        claims["iss"] = iss.into();
        signed(&claims)
    };
    let patient_claims = |s: &Server| {
        scr_auth::dev::patient_claims(
            &scr_auth::dev::PatientToken {
                audience: s.base.clone(),
                nhs_number: "9990000018".into(),
                proofing_level: "P9".into(),
                scope: "patient/*.rs".into(),
                lifetime_seconds: 600,
            },
            now(),
        )
    };
    let login = "https://login.test.invalid";
    let trust = "https://trust.test.invalid";
    // Within its limits, each issuer's token is honoured.
    let own = s.get(
        "/Patient/9990000018",
        Some(&from(login, patient_claims(&s))),
    );
    assert_eq!(own.status, 200, "{}", String::from_utf8_lossy(&own.body));
    let rxk = s.get(
        "/Patient/9990000018",
        Some(&from(trust, clinician_claims(&s, "RXK"))),
    );
    assert_ne!(rxk.status, 401);
    // NHS login vouching for a clinician; the trust's issuer for another organisation; a
    // token living longer than its issuer's tokens may.
    assert_401(&s, Some(&from(login, clinician_claims(&s, "RXK"))));
    assert_401(&s, Some(&from(trust, clinician_claims(&s, "M85001"))));
    assert_401(&s, Some(&from(trust, patient_claims(&s))));
    let mut long = clinician_claims(&s, "RXK");
    long["exp"] = (now() + 2 * 3600).into();
    assert_401(&s, Some(&from(trust, long)));
    let r = s.get(
        "/Patient/9990000018",
        Some(&from(login, clinician_claims(&s, "RXK"))),
    );
    assert!(
        r.header("WWW-Authenticate")
            .is_some_and(|h| h.contains("issuer may not assert")),
        "{:?}",
        r.headers
    );
}
