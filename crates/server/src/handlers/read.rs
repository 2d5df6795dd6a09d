//! `GET /{type}/{id}`: one resource by id.
//!
//! A Patient's id is their NHS number; the Patient is merged from every source that knows them.
//! Any other id is `{source}.{native key}` and is read from that source alone; a neighbouring
//! record's (`{neighbour}.{their id}`) by opening again the record of the patient it was served
//! for (docs/federation.md).
//!
//! `Last-Modified` is `meta.lastUpdated`; `If-Modified-Since` (without `If-None-Match`) not older
//! than it answers 304 without a body.
//!
//! Statuses: 200; 304; 401; 403 (role, scopes, or another patient's record); 404 (unknown, or not
//! visible to this caller: the two are indistinguishable); 406; 503/504 (the source is down).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::http::header::{self, HeaderValue};
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
        let resource = read_as(&state, access, resource_type, &id).await?;
        Ok(respond(&req, &resource))
    })
    .await
}

/// The resource, with its version as a weak ETag (versioned resources: alerts written here, for
/// If-Match) and `meta.lastUpdated` as `Last-Modified`; 304 without a body when the request's
/// `If-Modified-Since` is not older than it. The read is audited either way: a 304 still tells
/// the caller the record is there and unchanged.
fn respond(req: &HttpRequest, resource: &serde_json::Value) -> HttpResponse {
    let last_modified = last_modified(resource);
    let not_modified = match (last_modified, if_modified_since(req)) {
        (Some(modified), Some(since)) => modified <= since,
        _ => false,
    };
    let mut response = if not_modified {
        HttpResponse::NotModified().finish()
    } else {
        fhir_json(StatusCode::OK, resource)
    };
    let headers = response.headers_mut();
    if let Some(v) = resource["meta"]["versionId"].as_str() {
        if let Ok(value) = HeaderValue::from_str(&format!("W/\"{v}\"")) {
            headers.insert(header::ETAG, value);
        }
    }
    if let Some(modified) = last_modified {
        let date = header::HttpDate::from(modified);
        if let Ok(value) = HeaderValue::from_str(&date.to_string()) {
            headers.insert(header::LAST_MODIFIED, value);
        }
    }
    response
}

/// `meta.lastUpdated` to the second (HTTP dates have no fractions), if the resource has one.
fn last_modified(resource: &serde_json::Value) -> Option<SystemTime> {
    let secs = scr_fhir::build::unix_of_date_time(resource["meta"]["lastUpdated"].as_str()?)?;
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

/// `If-Modified-Since`, when present and a valid HTTP date (anything else is ignored, as RFC 9110
/// says), and only without `If-None-Match`, which takes precedence.
fn if_modified_since(req: &HttpRequest) -> Option<SystemTime> {
    if req.headers().contains_key(header::IF_NONE_MATCH) {
        return None;
    }
    let value = req
        .headers()
        .get(header::IF_MODIFIED_SINCE)?
        .to_str()
        .ok()?;
    let date: header::HttpDate = value.parse().ok()?;
    Some(SystemTime::from(date))
}

async fn read_as(
    state: &AppState,
    access: &Access,
    resource_type: &'static str,
    id: &str,
) -> Result<serde_json::Value, ApiError> {
    let records = &state.records;
    records.require(access, resource_type, Action::Read)?;
    if resource_type == "Patient" {
        if !nhs_number::is_valid(id) {
            return Err(ApiError::not_found(resource_type, id));
        }
        let opened = records
            .open(access, id, Action::Read, Wanted::Context)
            .await?;
        return Ok(opened.patient);
    }
    let record = records.read(access, resource_type, id).await?;
    Ok(record.resource)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn last_modified_is_meta_last_updated_and_if_modified_since_answers_304() {
        let resource = serde_json::json!({
            "resourceType": "Flag", "id": "scr.1",
            "meta": { "versionId": "2", "lastUpdated": "2026-11-20T08:00:00.250+01:00" }
        });
        let plain = respond(&TestRequest::default().to_http_request(), &resource);
        assert_eq!(plain.status(), StatusCode::OK);
        let lm = plain
            .headers()
            .get(header::LAST_MODIFIED)
            .and_then(|v| v.to_str().ok());
        assert_eq!(
            lm,
            Some("Fri, 20 Nov 2026 07:00:00 GMT"),
            "UTC, to the second"
        );
        let at = |since: &str| {
            let req = TestRequest::default()
                .insert_header((header::IF_MODIFIED_SINCE, since))
                .to_http_request();
            respond(&req, &resource).status()
        };
        assert_eq!(
            at("Fri, 20 Nov 2026 07:00:00 GMT"),
            StatusCode::NOT_MODIFIED
        );
        assert_eq!(
            at("Sat, 21 Nov 2026 07:00:00 GMT"),
            StatusCode::NOT_MODIFIED
        );
        assert_eq!(at("Fri, 20 Nov 2026 06:59:59 GMT"), StatusCode::OK);
        assert_eq!(
            at("yesterday"),
            StatusCode::OK,
            "an invalid date is ignored"
        );
        let none_match = TestRequest::default()
            .insert_header((header::IF_MODIFIED_SINCE, "Sat, 21 Nov 2026 07:00:00 GMT"))
            .insert_header((header::IF_NONE_MATCH, "W/\"1\""))
            .to_http_request();
        assert_eq!(respond(&none_match, &resource).status(), StatusCode::OK);
        let undated = serde_json::json!({ "resourceType": "Flag", "id": "scr.2" });
        let r = respond(&TestRequest::default().to_http_request(), &undated);
        assert!(r.headers().get(header::LAST_MODIFIED).is_none());
    }
}
