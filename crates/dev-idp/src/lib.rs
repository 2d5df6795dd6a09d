//! A development-only OpenID Connect provider, so the whole SMART flow (app → authorization
//! server → sign-in → app) runs on one machine: `scr demo` and the tests. **Never for real use**:
//! anyone may sign in as anyone, and its signing key is public (`examples/dev-issuer/`).
//!
//! Mounted by the server at [`PATH`] only when `auth.dev_identity_provider = true` (which the
//! configuration refuses without `auth.dev_issuer = true`). Endpoints, under the issuer
//! (`{origin of server.base_url}/dev-idp`):
//!
//! - `GET /.well-known/openid-configuration`: discovery.
//! - `GET /jwks`: the development issuer's public keys.
//! - `GET /authorize`: a sign-in page listing the demo users ([`users::users`]); with
//!   `user=<id>`, a 302 to `redirect_uri?code=..&state=..`. Bad parameters get a 400 page,
//!   never a redirect.
//! - `POST /token`: `authorization_code` with client authentication (`client_secret_basic` or
//!   `client_secret_post`, the configured secret) and PKCE (S256); errors as OAuth JSON.

pub mod flow;
pub mod users;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::json;

use flow::{AuthorizeRequest, OAuthError, TokenRequest};
pub use flow::{Provider, Settings, DEFAULT_SECRET};
pub use users::{user, users, User};

/// Where the provider is mounted, from the server's origin.
pub const PATH: &str = "/dev-idp";

/// Mounts the provider's routes at [`PATH`]. `provider` is shared by every worker (its codes).
pub fn configure(cfg: &mut web::ServiceConfig, provider: &Provider) {
    cfg.service(
        web::scope(PATH)
            .app_data(web::Data::new(provider.clone()))
            .route(
                "/.well-known/openid-configuration",
                web::get().to(discovery),
            )
            .route("/jwks", web::get().to(jwks))
            .route("/authorize", web::get().to(authorize))
            .route("/token", web::post().to(token)),
    );
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

async fn discovery(provider: web::Data<Provider>) -> HttpResponse {
    let iss = &provider.settings.issuer;
    HttpResponse::Ok().json(json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}/authorize"),
        "token_endpoint": format!("{iss}/token"),
        "jwks_uri": format!("{iss}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "code_challenge_methods_supported": ["S256"],
        "grant_types_supported": ["authorization_code"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "scopes_supported": ["openid"],
    }))
}

async fn jwks() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(scr_auth::dev::dev_jwks_json())
}

/// Form or query parameters, in order; a parameter given twice is refused (RFC 6749 §3.1).
fn params(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in url::form_urlencoded::parse(text.as_bytes()) {
        if out.iter().any(|(seen, _)| *seen == k) {
            return Err(format!("the parameter {k} is given more than once"));
        }
        out.push((k.into_owned(), v.into_owned()));
    }
    Ok(out)
}

fn get<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

pub use scr_auth::apps::escape_html as escape;

const TITLE: &str = "Development sign-in: not for real use";

fn page(status: StatusCode, body: &str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .body(format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>{TITLE}</title>\
             <style>body{{font-family:sans-serif;max-width:40em;margin:2em auto}}\
             .warn{{background:#fde0dc;border:2px solid #b71c1c;padding:.5em 1em}}\
             button{{display:block;width:100%;text-align:left;margin:.5em 0;padding:.6em;font-size:1em}}\
             </style></head><body><h1>{TITLE}</h1>\
             <p class=\"warn\">This is the development identity provider of the shared care record \
             demo. Anyone can sign in as anyone. Never enable it outside a demo or a test.</p>\
             {body}</body></html>\n"
        ))
}

fn bad_request(message: &str) -> HttpResponse {
    page(
        StatusCode::BAD_REQUEST,
        &format!(
            "<h2>This sign-in request cannot be completed</h2><p id=\"error\">{}</p>",
            escape(message)
        ),
    )
}

/// Checks an authorization request's parameters; the message is shown on the 400 page.
fn authorize_request(p: &[(String, String)]) -> Result<(AuthorizeRequest, url::Url), String> {
    let redirect_uri = get(p, "redirect_uri").ok_or("redirect_uri is missing")?;
    let redirect = url::Url::parse(redirect_uri).map_err(|_| "redirect_uri is not a URL")?;
    if !matches!(redirect.scheme(), "http" | "https") || redirect.fragment().is_some() {
        return Err("redirect_uri must be an http or https URL without a fragment".into());
    }
    if get(p, "response_type") != Some("code") {
        return Err("response_type must be code".into());
    }
    let client_id = get(p, "client_id").ok_or("client_id is missing")?;
    if !get(p, "scope").is_some_and(|s| s.split(' ').any(|s| s == "openid")) {
        return Err("scope must include openid".into());
    }
    let code_challenge = match (get(p, "code_challenge"), get(p, "code_challenge_method")) {
        (None, None) => None,
        (Some(c), Some("S256")) if c.len() == 43 => Some(c.to_owned()),
        (Some(_), Some("S256")) => {
            return Err("code_challenge must be a base64url SHA-256 (43 characters)".into())
        }
        _ => return Err("code_challenge_method must be S256, with a code_challenge".into()),
    };
    Ok((
        AuthorizeRequest {
            client_id: client_id.to_owned(),
            redirect_uri: redirect_uri.to_owned(),
            nonce: get(p, "nonce").map(str::to_owned),
            code_challenge,
        },
        redirect,
    ))
}

/// `GET /dev-idp/authorize`: the sign-in page, or with `user=<id>` the redirect with a code.
async fn authorize(provider: web::Data<Provider>, req: HttpRequest) -> HttpResponse {
    let p = match params(req.query_string()) {
        Ok(p) => p,
        Err(e) => return bad_request(&e),
    };
    let (request, mut redirect) = match authorize_request(&p) {
        Ok(r) => r,
        Err(e) => return bad_request(&e),
    };
    let Some(user_id) = get(&p, "user") else {
        return page(StatusCode::OK, &sign_in_list(&p));
    };
    let Some(user) = users::user(user_id) else {
        return bad_request("unknown user");
    };
    let code = match provider.issue_code(&request, user, unix_now()) {
        Ok(code) => code,
        Err(e) => return bad_request(e.description),
    };
    {
        let mut q = redirect.query_pairs_mut();
        q.append_pair("code", &code);
        if let Some(state) = get(&p, "state") {
            q.append_pair("state", state);
        }
    }
    log::info!("dev-idp: demo user {} signed in", user.id);
    HttpResponse::Found()
        .insert_header((header::LOCATION, redirect.as_str()))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// One form per demo user: a GET to this page with every parameter and `user=<id>`.
fn sign_in_list(p: &[(String, String)]) -> String {
    let hidden: String = p
        .iter()
        .filter(|(k, _)| k != "user")
        .map(|(k, v)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                escape(k),
                escape(v)
            )
        })
        .collect();
    let mut html = String::from("<h2>Choose a demo user</h2>\n");
    for u in users::users() {
        let detail = match u.kind {
            users::Kind::Staff { roles } => roles
                .iter()
                .map(|r| format!("{} ({}), {}", r.org_name, r.org_code, r.role_code))
                .collect::<Vec<_>>()
                .join("; "),
            users::Kind::Patient { nhs_number, .. } => {
                format!("Patient, NHS login P9, NHS number {nhs_number}")
            }
        };
        html.push_str(&format!(
            "<form method=\"get\" action=\"authorize\">{hidden}\
             <button type=\"submit\" name=\"user\" value=\"{id}\" data-user=\"{id}\">\
             <strong>{name}</strong><br>{detail}</button></form>\n",
            id = escape(u.id),
            name = escape(u.name),
            detail = escape(&detail),
        ));
    }
    html
}

fn oauth_error(status: StatusCode, e: &OAuthError) -> HttpResponse {
    let mut r = HttpResponse::build(status);
    r.insert_header((header::CACHE_CONTROL, "no-store"));
    if status == StatusCode::UNAUTHORIZED {
        r.insert_header((header::WWW_AUTHENTICATE, "Basic realm=\"dev-idp\""));
    }
    r.json(json!({ "error": e.error, "error_description": e.description }))
}

fn oauth_400(error: &'static str, description: &'static str) -> HttpResponse {
    oauth_error(StatusCode::BAD_REQUEST, &OAuthError { error, description })
}

fn invalid_client() -> HttpResponse {
    oauth_error(
        StatusCode::UNAUTHORIZED,
        &OAuthError {
            error: "invalid_client",
            description: "client authentication failed",
        },
    )
}

/// Decodes one `application/x-www-form-urlencoded` component (RFC 6749 §2.3.1 encodes the
/// Basic credentials so).
fn form_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("v={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// The Basic credentials, if the request carries an `Authorization: Basic` header.
fn basic_credentials(req: &HttpRequest) -> Option<Result<(String, String), ()>> {
    let value = req.headers().get(header::AUTHORIZATION)?;
    let parsed = (|| {
        let text = value.to_str().ok()?;
        let (scheme, b64) = text.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = String::from_utf8(STANDARD.decode(b64.trim()).ok()?).ok()?;
        let (id, secret) = decoded.split_once(':')?;
        Some((form_decode(id), form_decode(secret)))
    })();
    Some(parsed.ok_or(()))
}

/// `POST /dev-idp/token`: redeems a code for an id token.
async fn token(provider: web::Data<Provider>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';').next().is_some_and(|m| {
                m.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        });
    if !is_form {
        return oauth_400("invalid_request", "the body must be form-encoded");
    }
    let Ok(text) = std::str::from_utf8(&body) else {
        return oauth_400("invalid_request", "the body is not UTF-8");
    };
    let Ok(p) = params(text) else {
        return oauth_400("invalid_request", "a parameter is given more than once");
    };
    // Client authentication: exactly one method.
    let client_id = match (basic_credentials(&req), get(&p, "client_secret")) {
        (Some(_), Some(_)) => {
            return oauth_400(
                "invalid_request",
                "more than one client authentication method",
            )
        }
        (Some(Err(())), None) => return invalid_client(),
        (Some(Ok((id, secret))), None) => {
            if get(&p, "client_id").is_some_and(|c| c != id) || !provider.secret_matches(&secret) {
                return invalid_client();
            }
            id
        }
        (None, Some(secret)) => match get(&p, "client_id") {
            Some(id) if provider.secret_matches(secret) => id.to_owned(),
            _ => return invalid_client(),
        },
        (None, None) => return invalid_client(),
    };
    if get(&p, "grant_type") != Some("authorization_code") {
        return oauth_400(
            "unsupported_grant_type",
            "only authorization_code is supported",
        );
    }
    let (Some(code), Some(redirect_uri)) = (get(&p, "code"), get(&p, "redirect_uri")) else {
        return oauth_400("invalid_request", "code and redirect_uri are required");
    };
    let request = TokenRequest {
        code: code.to_owned(),
        redirect_uri: redirect_uri.to_owned(),
        client_id,
        code_verifier: get(&p, "code_verifier").map(str::to_owned),
    };
    match provider.redeem(&request, unix_now()) {
        Ok(answer) => HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header((header::PRAGMA, "no-cache"))
            .json(answer),
        Err(e) if e.error == "server_error" => oauth_error(StatusCode::INTERNAL_SERVER_ERROR, &e),
        Err(e) => oauth_error(StatusCode::BAD_REQUEST, &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::{test, App};

    const BASE: &str = "http://127.0.0.1:8080/fhir";
    const CB: &str = "http://127.0.0.1:8080/fhir/auth/callback";

    fn provider() -> Provider {
        Provider::new(Settings::for_base_url(BASE, DEFAULT_SECRET))
    }

    fn authorize_url(extra: &str) -> String {
        format!(
            "/dev-idp/authorize?response_type=code&client_id=scr&scope=openid%20profile\
             &redirect_uri={}&state=s%3C1%3E&nonce=n1{extra}",
            url::form_urlencoded::byte_serialize(CB.as_bytes()).collect::<String>()
        )
    }

    #[actix_web::test]
    async fn sign_in_page_lists_every_demo_user_and_escapes_echoed_params() {
        let p = provider();
        let app = test::init_service(App::new().configure(|c| configure(c, &p))).await;
        let res = test::call_service(
            &app,
            test::TestRequest::get()
                .uri(&authorize_url(""))
                .to_request(),
        )
        .await;
        assert_eq!(res.status(), StatusCode::OK);
        let body = String::from_utf8_lossy(&test::read_body(res).await).into_owned();
        assert!(body.contains(TITLE));
        for u in users::users() {
            assert!(
                body.contains(&format!("data-user=\"{}\"", u.id)),
                "{}",
                u.id
            );
        }
        assert!(body.contains("value=\"s&lt;1&gt;\""));
        assert!(!body.contains("s<1>"));
    }

    #[actix_web::test]
    async fn bad_authorize_requests_get_a_400_page_never_a_redirect() {
        let p = provider();
        let app = test::init_service(App::new().configure(|c| configure(c, &p))).await;
        for uri in [
            "/dev-idp/authorize?response_type=code&client_id=scr&scope=openid".to_owned(),
            "/dev-idp/authorize?response_type=code&client_id=scr&scope=openid&redirect_uri=javascript:alert(1)".to_owned(),
            authorize_url("&user=nobody"),
            authorize_url("&code_challenge_method=plain&code_challenge=abc"),
            authorize_url("").replace("response_type=code", "response_type=token"),
            authorize_url("").replace("scope=openid%20profile", "scope=profile"),
        ] {
            let res =
                test::call_service(&app, test::TestRequest::get().uri(&uri).to_request()).await;
            assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{uri}");
            assert!(res.headers().get(header::LOCATION).is_none());
        }
    }

    #[actix_web::test]
    async fn choosing_a_user_redirects_with_code_and_state_then_the_code_redeems_once() {
        let p = provider();
        let app = test::init_service(App::new().configure(|c| configure(c, &p))).await;
        let res = test::call_service(
            &app,
            test::TestRequest::get()
                .uri(&authorize_url("&user=trust-ben"))
                .to_request(),
        )
        .await;
        assert_eq!(res.status(), StatusCode::FOUND);
        let location = res
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let url = url::Url::parse(&location).ok();
        let q: Vec<(String, String)> = url
            .iter()
            .flat_map(|u| u.query_pairs().into_owned())
            .collect();
        assert!(location.starts_with(CB), "{location}");
        assert_eq!(get(&q, "state"), Some("s<1>"));
        let code = get(&q, "code").unwrap_or_default().to_owned();
        let form = format!(
            "grant_type=authorization_code&code={code}&redirect_uri={}",
            url::form_urlencoded::byte_serialize(CB.as_bytes()).collect::<String>()
        );
        let redeem = |auth: &str| {
            test::TestRequest::post()
                .uri("/dev-idp/token")
                .insert_header((header::CONTENT_TYPE, "application/x-www-form-urlencoded"))
                .insert_header((header::AUTHORIZATION, auth.to_owned()))
                .set_payload(form.clone())
                .to_request()
        };
        // A wrong secret is invalid_client, and leaves the code usable.
        let wrong = format!("Basic {}", STANDARD.encode("scr:wrong"));
        let res = test::call_service(&app, redeem(&wrong)).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        let good = format!("Basic {}", STANDARD.encode("scr:dev-only-secret"));
        let res = test::call_service(&app, redeem(&good)).await;
        assert_eq!(res.status(), StatusCode::OK);
        let body: serde_json::Value = test::read_body_json(res).await;
        assert_eq!(body["token_type"], "Bearer");
        assert!(body["id_token"]
            .as_str()
            .is_some_and(|t| t.split('.').count() == 3));
        let res = test::call_service(&app, redeem(&good)).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        let body: serde_json::Value = test::read_body_json(res).await;
        assert_eq!(body["error"], "invalid_grant");
    }
}
