//! `GET /.well-known/smart-configuration`: what a SMART client needs to know. It lists only
//! what works: token verification and scopes. The backend-services token endpoint arrives with
//! the access rules work and is not advertised until it exists.
//!
//! Statuses: 200.

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::state::AppState;

pub async fn smart_configuration(state: web::Data<AppState>) -> HttpResponse {
    let body = json!({
        "capabilities": ["permission-v1", "permission-v2", "permission-patient", "permission-user", "context-ehr-patient"],
        "scopes_supported": ["patient/*.rs", "user/*.rs", "system/*.rs", "patient/*.read", "user/*.read", "system/*.read"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "RS384", "ES256", "ES384"],
        "fhir_base_url": state.base_url,
    });
    HttpResponse::Ok()
        .content_type("application/json")
        .body(body.to_string())
}
