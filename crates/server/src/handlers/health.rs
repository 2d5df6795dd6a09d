//! Health for operators and orchestrators, outside `/fhir` and without a token: they carry no
//! patient data, only names and outcomes (`application/health+json`, the IETF draft's shape).
//!
//! - `GET /health/live`: 200 while the process serves HTTP.
//! - `GET /health/ready`: 200 when the store answers (sources down only degrade answers, each
//!   named in the checks); 503 when the store does not, since then nothing can be audited and so
//!   nothing is served (R-AUD-2).

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde_json::{json, Map, Value};

use crate::state::AppState;

fn health(status: StatusCode, body: Value) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("application/health+json")
        .insert_header(("Cache-Control", "no-store"))
        .body(body.to_string())
}

fn outcome(ok: bool) -> &'static str {
    if ok {
        "pass"
    } else {
        "fail"
    }
}

pub async fn live() -> HttpResponse {
    health(StatusCode::OK, json!({ "status": "pass" }))
}

pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let r = state.records.readiness().await;
    let mut checks = Map::new();
    checks.insert(
        "store".into(),
        json!([{ "componentType": "datastore", "status": outcome(r.store) }]),
    );
    for (name, ok) in &r.sources {
        checks.insert(
            format!("source:{name}"),
            json!([{ "componentType": "datastore", "status": if *ok { "pass" } else { "warn" } }]),
        );
    }
    let (status, word) = if r.store {
        let all = r.sources.iter().all(|(_, ok)| *ok);
        (StatusCode::OK, if all { "pass" } else { "warn" })
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "fail")
    };
    health(status, json!({ "status": word, "checks": checks }))
}
