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
use crate::access::authenticate;
use crate::error::ApiError;
use crate::gather::{merge_patient, patient_view, read_record};
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
    let access = authenticate(&state, &req)?;
    access.require(&state, resource_type, Interaction::Read)?;

    if resource_type == "Patient" {
        if !nhs_number::is_valid(&id) {
            return Err(ApiError::not_found(resource_type, &id));
        }
        access.require_patient(&id)?;
        let view = patient_view(&state, &id).await?;
        let patient = merge_patient(&id, &view.records.fragments)
            .ok_or_else(|| ApiError::not_found(resource_type, &id))?;
        return Ok(fhir_json(StatusCode::OK, &patient));
    }

    let (source_name, key) =
        scr_source::split_id(&id).ok_or_else(|| ApiError::not_found(resource_type, &id))?;
    let source = state
        .source(source_name)
        .ok_or_else(|| ApiError::not_found(resource_type, &id))?;
    let record = read_record(&state, source, resource_type, key.to_owned())
        .await?
        .ok_or_else(|| ApiError::not_found(resource_type, &id))?;
    // A record of someone else's, or one the policy withholds, is answered exactly as an id
    // that does not exist.
    if scr_policy::authorise_patient(&access.subject, &record.nhs_number).allowed
        && access.may_see(&record, Interaction::Read)
    {
        Ok(fhir_json(StatusCode::OK, &record.resource))
    } else {
        Err(ApiError::not_found(resource_type, &id))
    }
}
