//! `GET /Patient/{id}/$everything`: the whole visible record in one Bundle: the Patient first,
//! then active alerts most urgent first, then allergies, medications and observations, newest
//! first. Types the caller may not read are left out, as are records the policy withholds.
//!
//! Statuses: 200; 401; 403; 404 (no source knows this NHS number); 406; 503.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::Value;

use scr_fhir::bundle::{entry, searchset, EntryMode};
use scr_fhir::nhs_number;
use scr_policy::Action;
use scr_record::Wanted;

use crate::access::Access;
use crate::audit::{self, Subtype};
use crate::error::ApiError;
use crate::respond::{check_accept, fhir_json, outcome_entry, record_order};
use crate::state::AppState;

pub async fn everything(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    check_accept(&req)?;
    audit::audited(&state, &req, Subtype::Operation, async |access| {
        everything_as(&state, access, &id).await
    })
    .await
}

async fn everything_as(
    state: &AppState,
    access: &Access,
    id: &str,
) -> Result<HttpResponse, ApiError> {
    state.records.require(access, "Patient", Action::Read)?;
    if !nhs_number::is_valid(id) {
        return Err(ApiError::not_found("Patient", id));
    }
    // Records of types the caller may not read are withheld by the policy (R-ROLE-1/3).
    let opened = state
        .records
        .open(access, id, Action::Search, Wanted::Everything)
        .await?;
    let mut records: Vec<Value> = opened.records.into_iter().map(|r| r.resource).collect();
    records.sort_by(record_order);
    let total = records.len() + 1;
    let mut entries = vec![entry(&state.base_url, opened.patient, EntryMode::Match)];
    entries.extend(
        records
            .into_iter()
            .map(|r| entry(&state.base_url, r, EntryMode::Match)),
    );
    entries.extend(outcome_entry(&state.base_url, &opened.warnings));
    let links = [(
        "self",
        format!("{}/Patient/{}/$everything", state.base_url, id),
    )];
    let (_, now) = scr_fhir::build::today_and_now();
    Ok(fhir_json(
        StatusCode::OK,
        &searchset(&access.request_id, &now, Some(total), &links, entries),
    ))
}
