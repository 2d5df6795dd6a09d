//! `POST /auth/token`: the SMART Backend Services token endpoint (advertised in
//! `.well-known/smart-configuration` when configured). Form-encoded `grant_type=client_credentials`,
//! `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`,
//! `client_assertion` (RS384 or ES384, at most five minutes ahead, `jti` never reused) and an
//! optional `scope`; answers an access token for the server itself (`sub` = client id).
//!
//! This is an OAuth endpoint, so its errors are OAuth's (RFC 6749 §5.2: a JSON `error` and
//! `error_description`), not OperationOutcomes. Statuses: 200; 400 (invalid_request,
//! invalid_grant for a replayed assertion, invalid_scope, unsupported_grant_type); 401
//! (invalid_client); 404 (no token endpoint configured); 415 (not form-encoded); 429 (more than
//! `auth.token_requests_per_minute` from one client and address, with `Retry-After`); 503.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use scr_auth::token_endpoint::TokenError;

use crate::error::ApiError;
use crate::respond::{query_pairs, require_media_type};
use crate::state::AppState;

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
    // Limited per client (as the assertion names it, unverified) and address: a flood of
    // token requests is answered 429 before any signature is checked or any row written.
    let client = form
        .iter()
        .find(|(k, _)| k == "client_assertion")
        .and_then(|(_, v)| scr_auth::jwt::declared_issuer(v))
        .unwrap_or_default();
    if let Some(address) = req.peer_addr().map(|a| a.ip()) {
        if let Err(retry_after) = state.throttle.token_request(&client, address) {
            log::warn!("token endpoint: requests from one client and address over the limit; 429");
            return Ok(HttpResponse::TooManyRequests()
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .insert_header((header::RETRY_AFTER, retry_after.to_string()))
                .json(json!({
                    "error": "invalid_request",
                    "error_description": format!("too many token requests; retry after {retry_after} seconds"),
                })));
        }
    }
    let now = scr_fhir::build::unix_now();
    let accepted = match service.accept(&form, now) {
        Ok(a) => a,
        Err(e) => {
            log::info!("token endpoint refused a request: {}", e.code());
            return Ok(oauth_error(&e));
        }
    };
    let (client, jti, exp) = (
        accepted.client_id.clone(),
        accepted.jti.clone(),
        accepted.expires_at,
    );
    let first_use = state
        .records
        .with_store(move |conn| scr_store::audit::remember_assertion(conn, &client, &jti, exp))
        .await?;
    if !first_use {
        return Ok(oauth_error(&TokenError::InvalidGrant(
            "this client assertion was used before",
        )));
    }
    let (access_token, expires_in) = service.mint(&accepted, now).map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({ "access_token": access_token, "token_type": "bearer", "expires_in": expires_in, "scope": accepted.scope })))
}
