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

use scr_auth::token_endpoint::{Accepted, TokenError, ACCESS_TOKEN_TYPE};

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
