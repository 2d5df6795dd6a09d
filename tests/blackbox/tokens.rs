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
    }
}
