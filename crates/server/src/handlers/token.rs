//! `POST /auth/token`: the SMART Backend Services token endpoint (advertised in
//! `.well-known/smart-configuration` when configured). Form-encoded `grant_type=client_credentials`,
//! `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`,
//! `client_assertion` (RS384 or ES384, at most five minutes ahead, `jti` never reused) and an
//! optional `scope`; answers an access token for the server itself (`sub` = client id).
//!
//! For neighbouring shared care records configured as `[[auth.peers]]`, RFC 8693 token exchange
//! (docs/federation.md, R-FED-1): `grant_type=urn:ietf:params:oauth:grant-type:token-exchange`,
//! `actor_token` (the peer's client assertion) and `subject_token` (its user's context), both of
//! type `urn:ietf:params:oauth:token-type:jwt`, signed with the peer's key, at most five minutes
//! ahead, and both `jti`s never reused; answers (RFC 8693 §2.2) an access token for the end user
//! with `issued_token_type` `urn:ietf:params:oauth:token-type:access_token`, living at most
//! five minutes. An unknown peer or an actor token that does not verify is `invalid_client`
//! (401); a subject token that does not verify or lacks the user's context `invalid_grant`.
//!
//! This is an OAuth endpoint, so its errors are OAuth's (RFC 6749 §5.2: a JSON `error` and
//! `error_description`), not OperationOutcomes. Statuses: 200; 400 (invalid_request,
//! invalid_grant for a replayed assertion, invalid_scope, unsupported_grant_type); 401
//! (invalid_client); 404 (no token endpoint configured); 415 (not form-encoded); 429 (more than
//! `auth.token_requests_per_minute` from one client and address, with `Retry-After`); 503.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use scr_auth::token_endpoint::{form_field as field, Accepted, TokenError, ACCESS_TOKEN_TYPE};

use crate::error::ApiError;
use crate::respond::{query_pairs, require_media_type};
use crate::state::AppState;

/// 429 with `Retry-After`, as an OAuth error.
fn too_many(retry_after: u64) -> HttpResponse {
    HttpResponse::TooManyRequests()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::RETRY_AFTER, retry_after.to_string()))
        .json(json!({
            "error": "invalid_request",
            "error_description": format!("too many token requests; retry after {retry_after} seconds"),
        }))
}

fn oauth_error(e: &TokenError) -> HttpResponse {
    HttpResponse::build(StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({ "error": e.code(), "error_description": e.description() }))
}

pub async fn token(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let Some(service) = &state.token_service else {
        return Err(ApiError::UnknownEndpoint {
            what: "the token endpoint (no auth.signing_key_file configured)".into(),
        });
    };
    require_media_type(&req, &["application/x-www-form-urlencoded"])?;
    let form = query_pairs(
        std::str::from_utf8(&body)
            .map_err(|_| ApiError::invalid("body", "the form body is not UTF-8"))?,
    )?;
    let grant_type = form
        .iter()
        .find(|(k, _)| k == "grant_type")
        .map(|(_, v)| v.as_str());
    if matches!(grant_type, Some("authorization_code" | "refresh_token")) {
        return app_grant(&state, &req, service, &form).await;
    }
    // Limited per client (as the assertion or actor token names it, unverified) and address:
    // a flood of token requests is answered 429 before any signature is checked or any row
    // written.
    // Exchanges by neighbouring records have a limit of their own (auth.exchanges_per_minute).
    let client = form
        .iter()
        .find(|(k, _)| k == "client_assertion" || k == "actor_token")
        .and_then(|(_, v)| scr_auth::jwt::declared_issuer(v))
        .unwrap_or_default();
    let exchange = form.iter().any(|(k, _)| k == "actor_token");
    if let Some(address) = req.peer_addr().map(|a| a.ip()) {
        let limited = if exchange {
            state.throttle.exchange(&client, address)
        } else {
            state.throttle.token_request(&client, address)
        };
        if let Err(retry_after) = limited {
            log::warn!("token endpoint: requests from one client and address over the limit; 429");
            return Ok(too_many(retry_after));
        }
    }
    let now = scr_fhir::build::unix_now();
    let accepted = match service.accept_grant(&form, now) {
        Ok(a) => a,
        Err(e) => {
            log::info!("token endpoint refused a request: {}", e.code());
            return Ok(oauth_error(&e));
        }
    };
    // Every jti is remembered before anything is minted; one seen before refuses the request.
    let jtis = accepted.jtis();
    let first_use = state
        .records
        .with_store(move |conn| {
            let mut all_new = true;
            for (client, jti, exp) in &jtis {
                all_new &= scr_store::audit::remember_assertion(conn, client, jti, *exp)?;
            }
            Ok(all_new)
        })
        .await?;
    if !first_use {
        log::info!("token endpoint refused a request: a reused jti");
        return Ok(oauth_error(&TokenError::InvalidGrant(
            "this client assertion (or subject token) was used before",
        )));
    }
    let (access_token, expires_in) = service
        .mint_accepted(&accepted, now)
        .map_err(ApiError::internal)?;
    let body = match &accepted {
        Accepted::Assertion(a) => json!({
            "access_token": access_token, "token_type": "bearer",
            "expires_in": expires_in, "scope": a.scope,
        }),
        Accepted::Exchange(e) => {
            log::info!(
                "token endpoint exchanged a token for a user of peer {} (request {})",
                e.peer,
                e.user.request_id
            );
            json!({
                "access_token": access_token, "issued_token_type": ACCESS_TOKEN_TYPE,
                "token_type": "Bearer", "expires_in": expires_in, "scope": e.scope,
            })
        }
    };
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body))
}

/// The sign-in state could not be read or written: 503, nothing issued.
fn unavailable(e: scr_login::SessionError) -> ApiError {
    ApiError::Unavailable {
        detail: e.to_string(),
    }
}

/// The app's client id, authenticated: a public app names itself (PKCE proves the rest); a
/// confidential app sends its secret by HTTP Basic or in the form (compared in constant time).
fn app_client<'s>(
    service: &'s scr_auth::token_endpoint::TokenService,
    req: &HttpRequest,
    form: &[(String, String)],
) -> Result<&'s scr_auth::apps::RegisteredApp, TokenError> {
    use base64::Engine as _;
    let basic = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            s.split_once(':')
                .map(|(id, secret)| (id.to_owned(), secret.to_owned()))
        });
    let client_id = basic
        .as_ref()
        .map(|(id, _)| id.as_str())
        .or_else(|| field(form, "client_id"))
        .ok_or(TokenError::InvalidClient("client_id is required"))?;
    let app = service
        .app(client_id)
        .ok_or(TokenError::InvalidClient("unknown client"))?;
    let secret = basic
        .as_ref()
        .map(|(_, s)| s.as_str())
        .or_else(|| field(form, "client_secret"));
    match (&app.secret, secret) {
        (None, None) => Ok(app),
        (None, Some(_)) => Err(TokenError::InvalidClient(
            "this app is public: it has no secret",
        )),
        (Some(expected), Some(given))
            if expected.len() == given.len()
                && openssl::memcmp::eq(expected.as_bytes(), given.as_bytes()) =>
        {
            Ok(app)
        }
        (Some(_), _) => Err(TokenError::InvalidClient(
            "the client could not be authenticated",
        )),
    }
}

/// The token answer for an app's grant (SMART App Launch §token response).
fn app_token_response(
    service: &scr_auth::token_endpoint::TokenService,
    grant: &scr_auth::apps::AppGrant,
    now: i64,
) -> Result<HttpResponse, ApiError> {
    let tokens = service.mint_app(grant, now).map_err(ApiError::internal)?;
    let mut body = json!({
        "access_token": tokens.access_token, "token_type": "Bearer",
        "expires_in": tokens.expires_in, "scope": grant.scope,
    });
    if let Some(nhs) = &grant.patient {
        // The Patient resource id is the NHS number.
        body["patient"] = json!(nhs);
        body["need_patient_banner"] = json!(true);
    }
    if let Some(t) = tokens.refresh_token {
        body["refresh_token"] = json!(t);
    }
    if let Some(t) = tokens.id_token {
        body["id_token"] = json!(t);
    }
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .json(body))
}

/// `authorization_code` (with the PKCE verifier) and `refresh_token` (rotated: each refresh
/// token is used once; a second use revokes the sign-in's whole family) for registered apps.
async fn app_grant(
    state: &AppState,
    req: &HttpRequest,
    service: &scr_auth::token_endpoint::TokenService,
    form: &[(String, String)],
) -> Result<HttpResponse, ApiError> {
    // Apps share the exchange limit: many users of one app sit behind one hospital address.
    let client = field(form, "client_id").unwrap_or_default();
    if let Some(address) = req.peer_addr().map(|a| a.ip()) {
        if let Err(retry_after) = state.throttle.exchange(client, address) {
            return Ok(too_many(retry_after));
        }
    }
    let app = match app_client(service, req, form) {
        Ok(app) => app,
        Err(e) => return Ok(oauth_error(&e)),
    };
    let now = scr_fhir::build::unix_now();
    if field(form, "grant_type") == Some("authorization_code") {
        let refused = |d: &'static str| Ok(oauth_error(&TokenError::InvalidGrant(d)));
        // The code is spent by this request whatever its outcome.
        let redeemed = match field(form, "code") {
            Some(c) => state.sessions.redeem_code(c).await.map_err(unavailable)?,
            None => None,
        };
        let Some(issued) = redeemed else {
            return refused("the authorization code is unknown, used or expired");
        };
        if issued.grant.client_id != app.client_id {
            return refused("the authorization code was issued to another app");
        }
        if field(form, "redirect_uri") != Some(issued.redirect_uri.as_str()) {
            return refused("redirect_uri is not the one the code was issued for");
        }
        let verifier = field(form, "code_verifier").unwrap_or_default();
        if !scr_auth::apps::pkce_matches(verifier, &issued.code_challenge) {
            log::info!("token endpoint: a PKCE verifier did not match; code refused");
            return refused("the PKCE code_verifier does not match the code_challenge");
        }
        return app_token_response(service, &issued.grant, now);
    }
    let Some(token) = field(form, "refresh_token") else {
        return Ok(oauth_error(&TokenError::InvalidRequest(
            "refresh_token is required",
        )));
    };
    let accepted = match service.accept_refresh(token, &app.client_id, now) {
        Ok(a) => a,
        Err(e) => return Ok(oauth_error(&e)),
    };
    let family = &accepted.grant.family;
    if state
        .sessions
        .family_revoked(family)
        .await
        .map_err(unavailable)?
    {
        return Ok(oauth_error(&TokenError::InvalidGrant(
            "this sign-in was revoked: sign in again",
        )));
    }
    let (client_id, jti, exp) = (
        format!("refresh:{}", app.client_id),
        accepted.jti.clone(),
        accepted.expires_at,
    );
    let first_use = state
        .records
        .with_store(move |conn| scr_store::audit::remember_assertion(conn, &client_id, &jti, exp))
        .await?;
    if !first_use {
        // A refresh token used twice was copied: end the whole sign-in (RFC 9700 §4.14.2).
        state
            .sessions
            .revoke_family(family, accepted.grant.family_expires_at)
            .await
            .map_err(unavailable)?;
        log::warn!(
            "token endpoint: a refresh token of app {} was used twice; its sign-in is revoked",
            app.client_id
        );
        return Ok(oauth_error(&TokenError::InvalidGrant(
            "this refresh token was used before: the sign-in is revoked",
        )));
    }
    app_token_response(service, &accepted.grant, now)
}
