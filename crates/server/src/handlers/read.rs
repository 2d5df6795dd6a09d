//! `GET /{type}/{id}`: one resource by id.
//!
//! A Patient's id is their NHS number; the Patient is merged from every source that knows them.
//! Any other id is `{source}.{native key}` and is read from that source alone.
//!
//! Statuses: 200; 401; 403 (role, scopes, or another patient's record); 404 (unknown, or not
//! visible to this caller: the two are indistinguishable); 406; 503/504 (the source is down).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use scr_fhir::nhs_number;
use scr_policy::Action;
use scr_record::Wanted;

use super::served_type;
use crate::access::Access;
use crate::audit::{self, Subtype};
use crate::error::ApiError;
use crate::respond::{check_accept, fhir_json};
use crate::state::AppState;

pub async fn read(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (type_name, id) = path.into_inner();
    let resource_type = served_type(&type_name)?;
    check_accept(&req)?;
    audit::audited(&state, &req, Subtype::Read, async |access| {
        read_as(&state, access, resource_type, &id).await
    })
    .await
}

/// Versioned resources (alerts written here) carry their version as a weak ETag, for If-Match.
fn with_etag(mut response: HttpResponse, resource: &serde_json::Value) -> HttpResponse {
    if let Some(v) = resource["meta"]["versionId"].as_str() {
        if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&format!("W/\"{v}\"")) {
            response
                .headers_mut()
                .insert(actix_web::http::header::ETAG, value);
        }
    }
    response
}

async fn read_as(
    state: &AppState,
    access: &Access,
    resource_type: &'static str,
    id: &str,
) -> Result<HttpResponse, ApiError> {
    let records = &state.records;
    records.require(access, resource_type, Action::Read)?;
    if resource_type == "Patient" {
        if !nhs_number::is_valid(id) {
            return Err(ApiError::not_found(resource_type, id));
        }
        let opened = records
            .open(access, id, Action::Read, Wanted::Context)
            .await?;
        return Ok(fhir_json(StatusCode::OK, &opened.patient));
    }
    let record = records.read(access, resource_type, id).await?;
    Ok(with_etag(
        fhir_json(StatusCode::OK, &record.resource),
        &record.resource,
    ))
}
