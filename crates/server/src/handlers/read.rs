//! `GET /{type}/{id}`: one resource by id.
//!
//! A Patient's id is their NHS number; the Patient is merged from every source that knows them.
//! Any other id is `{source}.{native key}` and is read from that source alone.
//!
//! Statuses: 200; 401; 403 (role, scopes, or another patient's record); 404 (unknown, or not
//! visible to this caller: the two are indistinguishable); 406; 503/504 (the source is down).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use scr_auth::Interaction;
use scr_fhir::nhs_number;

use super::served_type;
use crate::access::Access;
use crate::audit::{self, Subtype};
use crate::error::ApiError;
use crate::gather::read_record;
use crate::opened::{open, open_fetching, Wanted};
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
    access.require(state, resource_type, Interaction::Read)?;
    if resource_type == "Patient" {
        if !nhs_number::is_valid(id) {
            return Err(ApiError::not_found(resource_type, id));
        }
        let opened = open_fetching(state, access, id, Interaction::Read, Wanted::Context).await?;
        return Ok(fhir_json(StatusCode::OK, &opened.patient));
    }

    let (source_name, key) =
        scr_source::split_id(id).ok_or_else(|| ApiError::not_found(resource_type, id))?;
    let source = state
        .source(source_name)
        .ok_or_else(|| ApiError::not_found(resource_type, id))?;
    let record = read_record(state, source, resource_type, key.to_owned())
        .await?
        .ok_or_else(|| ApiError::not_found(resource_type, id))?;
    // The record is shown only as part of its patient's record opened for this caller. A record
    // of a patient the caller may not open, or one the policy withholds, is answered exactly as
    // an id that does not exist: ids of some sources are sequential and must not be probed.
    match open(state, access, &record.nhs_number, Interaction::Read).await {
        Ok(opened) => opened
            .records
            .into_iter()
            .find(|r| r.resource_type == resource_type && r.id == record.id)
            .map(|r| with_etag(fhir_json(StatusCode::OK, &r.resource), &r.resource))
            .ok_or_else(|| ApiError::not_found(resource_type, id)),
        Err(ApiError::Forbidden { .. } | ApiError::NotFound { .. }) => {
            Err(ApiError::not_found(resource_type, id))
        }
        Err(other) => Err(other),
    }
}
