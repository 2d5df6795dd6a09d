//! The login provider client against a real OpenID Connect provider over HTTP: an in-process
//! actix-web server on a free port, whose keys the test rotates. Protects: an id token signed
//! with a new `kid` is accepted after the JWKS is fetched again; a `kid` still unknown after
//! that is refused; a nonce or audience of another sign-in is refused.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use scr_auth::{CallerKind, IssuerLimits};
use scr_login::{LoginError, LoginProvider, ProviderSettings};
use serde_json::{json, Value};

type TestResult = Result<(), Box<dyn std::error::Error>>;

#[derive(Default)]
struct Fixture {
    issuer: String,
    jwks: Value,
    id_token: String,
    jwks_fetches: usize,
}

type Shared = Arc<Mutex<Fixture>>;

fn locked(s: &Shared) -> std::sync::MutexGuard<'_, Fixture> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

async fn discovery(s: web::Data<Shared>) -> HttpResponse {
    let iss = locked(&s).issuer.clone();
    HttpResponse::Ok().json(json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}/authorize"),
        "token_endpoint": format!("{iss}/token"),
        "jwks_uri": format!("{iss}/jwks"),
    }))
}

async fn jwks(s: web::Data<Shared>) -> HttpResponse {
    let mut f = locked(&s);
    f.jwks_fetches += 1;
    HttpResponse::Ok().json(f.jwks.clone())
}

async fn token(s: web::Data<Shared>) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "id_token": locked(&s).id_token, "token_type": "Bearer" }))
}

struct Key {
    pem: Vec<u8>,
    jwk: Value,
}

fn key(kid: &str) -> Result<Key, Box<dyn std::error::Error>> {
    let pkey = PKey::from_rsa(Rsa::generate(2048)?)?;
    Ok(Key {
        pem: pkey.private_key_to_pem_pkcs8()?,
        jwk: scr_auth::jwks::public_jwk_json(&pkey, kid, None)?,
    })
}

fn id_token(f: &Fixture, key: &Key, kid: &str, aud: &str, nonce: &str) -> String {
    let now = scr_fhir_now();
    let claims = json!({
        "iss": f.issuer, "aud": aud, "sub": "trust-ben", "iat": now, "exp": now + 300,
        "nonce": nonce, "name": "Dr Ben Okafor", "selected_roleid": "r1",
        "nhsid_nrbac_roles": [{"person_roleid": "r1", "org_code": "RXK", "role_code": "S8000:G8000:R8000"}],
    });
    scr_auth::dev::sign(&claims, "RS256", &key.pem, kid).unwrap_or_default()
}

fn scr_fhir_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

#[test]
fn jwks_rotation_a_new_kid_is_fetched_and_an_unknown_one_is_not_trusted() -> TestResult {
    actix_rt::System::new().block_on(rotation())
}

async fn rotation() -> TestResult {
    let shared: Shared = Arc::new(Mutex::new(Fixture::default()));
    let data = web::Data::new(shared.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route(
                "/.well-known/openid-configuration",
                web::get().to(discovery),
            )
            .route("/jwks", web::get().to(jwks))
            .route("/token", web::post().to(token))
    })
    .workers(1)
    .bind("127.0.0.1:0")?;
    let port = server.addrs()[0].port();
    let running = server.run();
    let handle = running.handle();
    actix_rt::spawn(running);

    let (k1, k2, k3) = (key("k1")?, key("k2")?, key("k3")?);
    let issuer = format!("http://127.0.0.1:{port}");
    {
        let mut f = locked(&shared);
        f.issuer = issuer.clone();
        f.jwks = json!({ "keys": [k1.jwk.clone()] });
    }
    let provider = LoginProvider::new(ProviderSettings {
        name: "cis2".into(),
        issuer,
        client_id: "scr".into(),
        client_secret: "secret".into(),
        limits: IssuerLimits {
            kinds: vec![CallerKind::Staff],
            organisations: None,
            max_lifetime_seconds: 3600,
            federation: false,
        },
        leeway_seconds: 30,
        timeout: Duration::from_secs(5),
        jwks_refetch: Duration::ZERO,
    })?;
    let sign_in = |nonce: &'static str| {
        let provider = &provider;
        async move {
            provider
                .sign_in(
                    "code",
                    "verifier",
                    "http://127.0.0.1/cb",
                    nonce,
                    scr_fhir_now(),
                )
                .await
        }
    };

    // The key in the JWKS: signed in as the staff member in their role.
    locked(&shared).id_token = {
        let f = locked(&shared);
        id_token(&f, &k1, "k1", "scr", "n1")
    };
    let (caller, _) = sign_in("n1").await?;
    assert_eq!(caller.kind, CallerKind::Staff);
    assert_eq!(caller.organisation.as_deref(), Some("RXK"));
    assert_eq!(locked(&shared).jwks_fetches, 1);

    // The provider rotates to k2: the unknown kid makes the client fetch the JWKS again.
    locked(&shared).jwks = json!({ "keys": [k1.jwk.clone(), k2.jwk.clone()] });
    locked(&shared).id_token = {
        let f = locked(&shared);
        id_token(&f, &k2, "k2", "scr", "n2")
    };
    sign_in("n2").await?;
    assert_eq!(locked(&shared).jwks_fetches, 2);

    // A kid the provider does not publish is refused after one more fetch.
    locked(&shared).id_token = {
        let f = locked(&shared);
        id_token(&f, &k3, "k3", "scr", "n3")
    };
    let e = sign_in("n3").await.err();
    assert!(
        matches!(
            e,
            Some(LoginError::IdToken {
                source: scr_auth::AuthError::UnknownKey
            })
        ),
        "{e:?}"
    );
    // A token signed by k3 but naming k2 does not verify either.
    locked(&shared).id_token = {
        let f = locked(&shared);
        id_token(&f, &k3, "k2", "scr", "n4")
    };
    assert!(sign_in("n4").await.is_err());

    // Another sign-in's nonce, or another client's audience, is refused.
    locked(&shared).id_token = {
        let f = locked(&shared);
        id_token(&f, &k1, "k1", "scr", "other")
    };
    assert!(matches!(
        sign_in("n5").await,
        Err(LoginError::Refused { .. })
    ));
    locked(&shared).id_token = {
        let f = locked(&shared);
        id_token(&f, &k1, "k1", "another-client", "n6")
    };
    assert!(sign_in("n6").await.is_err());

    handle.stop(true).await;
    Ok(())
}
