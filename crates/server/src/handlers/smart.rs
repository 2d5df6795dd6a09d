//! `GET /.well-known/smart-configuration`: what a SMART client needs to know. It lists only
//! what works: the scopes understood and, where `auth.signing_key_file` is configured, the SMART
//! Backend Services token endpoint.
//!
//! Statuses: 200.

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
    }
    HttpResponse::Ok()
        .content_type("application/json")
        .body(body.to_string())
}
