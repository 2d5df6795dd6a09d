//! The development identity provider (issue 13 item 3) and the viewer app's files (item 4), on
//! the real server: discovery, JWKS, the sign-in page, a code, the id token verified with the
//! JWKS the server publishes; and neither is served unless configured.

use serde_json::Value;

use crate::harness::{now, servers, Server};

fn origin(s: &Server) -> String {
    format!("http://127.0.0.1:{}", s.port)
}

fn get(s: &Server, path: &str) -> crate::harness::Response {
    s.request("GET", &format!("{}{path}", origin(s)), &[], b"")
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn query_value(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| v.to_owned())
    })
}

/// PKCE S256 of `verifier`.
fn s256(verifier: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(openssl::sha::sha256(verifier.as_bytes()))
}

#[test]
fn dev_identity_provider_signs_in_a_demo_user_with_pkce_and_its_id_token_verifies() {
    for s in servers() {
        let iss = format!("{}/dev-idp", origin(s));
        let discovery = get(s, "/dev-idp/.well-known/openid-configuration");
        assert_eq!(discovery.status, 200);
        let d: Value = serde_json::from_slice(&discovery.body).expect("discovery JSON");
        assert_eq!(d["issuer"], iss.as_str());
        assert_eq!(d["token_endpoint"], format!("{iss}/token"));
        assert_eq!(d["code_challenge_methods_supported"][0], "S256");

        let callback = format!("{}/auth/callback", s.base);
        let verifier = "a-verifier-of-the-dev-idp-black-box-test-0123456789";
        let authorize = format!(
            "/dev-idp/authorize?response_type=code&client_id=scr&scope=openid&state=xyz\
             &nonce=n-1&redirect_uri={}&code_challenge={}&code_challenge_method=S256",
            enc(&callback),
            s256(verifier)
        );
        let page = get(s, &authorize);
        assert_eq!(page.status, 200);
        let html = String::from_utf8_lossy(&page.body).into_owned();
        assert!(html.contains("Development sign-in: not for real use"));
        assert!(html.contains("data-user=\"trust-ben\""));
        assert!(page
            .header("content-security-policy")
            .is_some_and(|c| c.contains("default-src 'none'")));

        let chosen = get(s, &format!("{authorize}&user=trust-ben"));
        assert_eq!(chosen.status, 302);
        let location = chosen.header("location").unwrap_or_default().to_owned();
        assert!(location.starts_with(&callback), "{location}");
        assert_eq!(query_value(&location, "state").as_deref(), Some("xyz"));
        let code = query_value(&location, "code").expect("a code");

        let token = |verifier: &str| {
            let form = format!(
                "grant_type=authorization_code&code={code}&redirect_uri={}&client_id=scr\
                 &client_secret=dev-only-secret&code_verifier={verifier}",
                enc(&callback)
            );
            s.request(
                "POST",
                &format!("{}/dev-idp/token", origin(s)),
                &[("Content-Type", "application/x-www-form-urlencoded")],
                form.as_bytes(),
            )
        };
        let answer = token(verifier);
        assert_eq!(
            answer.status,
            200,
            "{}",
            String::from_utf8_lossy(&answer.body)
        );
        let answer: Value = serde_json::from_slice(&answer.body).expect("token JSON");
        assert_eq!(answer["token_type"], "Bearer");
        let id_token = answer["id_token"].as_str().expect("id_token");

        let jwks = get(s, "/dev-idp/jwks");
        assert_eq!(jwks.status, 200);
        let issuer = scr_auth::Issuer {
            iss: iss.clone(),
            jwks: scr_auth::Jwks::from_json(&String::from_utf8_lossy(&jwks.body)).expect("JWKS"),
            limits: scr_auth::IssuerLimits::any(300),
        };
        let verified = scr_auth::Verifier::new(vec![issuer], "scr".into(), 60)
            .verify_claims(id_token, now())
            .expect("the id token verifies with the published JWKS");
        assert_eq!(verified.claims["nonce"], "n-1");
        assert_eq!(verified.claims["name"], "Dr Ben Okafor");
        assert_eq!(verified.claims["nhsid_nrbac_roles"][0]["org_code"], "RXK");

        // Single use: the same code again is refused.
        let again = token(verifier);
        assert_eq!(again.status, 400);
        let again: Value = serde_json::from_slice(&again.body).expect("OAuth error JSON");
        assert_eq!(again["error"], "invalid_grant");
    }
}

#[test]
fn viewer_app_is_served_with_content_types_and_a_content_security_policy() {
    for s in servers() {
        for (file, kind) in [
            ("launch.html", "text/html"),
            ("index.html", "text/html"),
            ("app.js", "text/javascript"),
            ("style.css", "text/css"),
            ("vendor/fhir-client.pure.min.js", "text/javascript"),
        ] {
            let r = get(s, &format!("/apps/viewer/{file}"));
            assert_eq!(r.status, 200, "{file}");
            assert!(
                r.header("content-type")
                    .is_some_and(|c| c.starts_with(kind)),
                "{file}"
            );
            assert!(r
                .header("content-security-policy")
                .is_some_and(|c| c.contains("script-src 'self'")));
        }
        assert_eq!(get(s, "/apps/viewer/../scr.toml").status, 404);
        assert_eq!(get(s, "/apps/viewer/nothing.js").status, 404);
        let post = s.request(
            "POST",
            &format!("{}/apps/viewer/index.html", origin(s)),
            &[],
            b"",
        );
        assert_eq!(post.status, 405);
    }
}

/// Never enabled unless configured: without the keys, neither path exists.
#[test]
fn dev_identity_provider_and_viewer_are_absent_unless_configured() {
    let s = Server::sqlite_prepared("no-dev-idp", 0, |dir| {
        let path = dir.join("scr.toml");
        let config = std::fs::read_to_string(&path).expect("config");
        let config = config
            .replace(
                "dev_identity_provider = true",
                "dev_identity_provider = false",
            )
            .replace("viewer_app = true", "viewer_app = false");
        std::fs::write(&path, config).expect("config");
    });
    assert_eq!(
        get(&s, "/dev-idp/.well-known/openid-configuration").status,
        404
    );
    assert_eq!(get(&s, "/apps/viewer/index.html").status, 404);
}
