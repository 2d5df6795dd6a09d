//! `GET /.well-known/smart-configuration`: what a SMART client needs to know. It lists only
//! what works: the scopes understood; where `auth.signing_key_file` is configured, the token
//! endpoint (SMART Backend Services, token exchange for peers); where `[[auth.apps]]` are
//! registered, the authorization endpoint with PKCE, EHR and standalone launch and the
//! `launch`, `openid` and refresh scopes. `GET /auth/jwks`: the public key this server signs its
//! access and id tokens with.
//!
//! Statuses: 200; 404 (`/auth/jwks` without a token endpoint).

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::state::AppState;

pub async fn smart_configuration(state: web::Data<AppState>) -> HttpResponse {
    let mut body = json!({
        // Only what works: there is no authorization endpoint yet, so no launch context
        // (`context-ehr-patient` was advertised and did not exist).
        "capabilities": ["permission-v1", "permission-v2", "permission-patient", "permission-user"],
        "scopes_supported": [
            "patient/*.rs", "user/*.rs", "system/*.rs", "patient/*.read", "user/*.read", "system/*.read",
            "user/Flag.cu", "patient/Flag.cu", "user/Consent.c", "user/Consent.rs",
            "user/AuditEvent.rs", "patient/AuditEvent.rs"
        ],
        "fhir_base_url": state.base_url,
    });
    // The token endpoint is advertised only where it is configured.
    if let Some(ts) = &state.token_service {
        body["token_endpoint"] = ts.token_url().into();
        body["grant_types_supported"] = if ts.exchanges() {
            json!([
                "client_credentials",
                scr_auth::token_endpoint::TOKEN_EXCHANGE
            ])
        } else {
            json!(["client_credentials"])
        };
        body["token_endpoint_auth_methods_supported"] = json!(["private_key_jwt"]);
        body["token_endpoint_auth_signing_alg_values_supported"] = json!(["RS384", "ES384"]);
        if let Some(c) = body["capabilities"].as_array_mut() {
            c.push("client-confidential-asymmetric".into())
        }
        if !ts.apps().is_empty() {
            let base = &state.base_url;
            body["authorization_endpoint"] = format!("{base}/auth/authorize").into();
            body["issuer"] = base.as_str().into();
            body["jwks_uri"] = format!("{base}/auth/jwks").into();
            body["response_types_supported"] = json!(["code"]);
            body["code_challenge_methods_supported"] = json!(["S256"]);
            if let Some(g) = body["grant_types_supported"].as_array_mut() {
                g.extend(["authorization_code".into(), "refresh_token".into()]);
            }
            if let Some(m) = body["token_endpoint_auth_methods_supported"].as_array_mut() {
                m.extend([
                    "client_secret_basic".into(),
                    "client_secret_post".into(),
                    "none".into(),
                ]);
            }
            if let Some(c) = body["capabilities"].as_array_mut() {
                c.extend(
                    [
                        "launch-ehr",
                        "launch-standalone",
                        "client-public",
                        "client-confidential-symmetric",
                        "context-ehr-patient",
                        "context-standalone-patient",
                        "sso-openid-connect",
                        "permission-offline",
                        "permission-online",
                    ]
                    .map(serde_json::Value::from),
                );
            }
            if let Some(s) = body["scopes_supported"].as_array_mut() {
                s.extend(
                    [
                        "launch",
                        "launch/patient",
                        "openid",
                        "fhirUser",
                        "online_access",
                        "offline_access",
                    ]
                    .map(serde_json::Value::from),
                );
            }
        }
    }
    HttpResponse::Ok()
        .content_type("application/json")
        .body(body.to_string())
}

/// `GET /auth/jwks`: this server's public signing key (its access and id tokens).
pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    match state.token_service.as_ref().map(|ts| ts.public_jwks_json()) {
        Some(Ok(jwks)) => HttpResponse::Ok()
            .content_type("application/json")
            .body(jwks),
        Some(Err(e)) => {
            log::error!("the token endpoint's public key could not be served: {e}");
            HttpResponse::InternalServerError().finish()
        }
        None => HttpResponse::NotFound().finish(),
    }
}
