//! Shared by the handlers: JSON responses, negotiation checks, ordering and Bundle assembly.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse};
use serde_json::Value;

use scr_fhir::alerts::flag_rank;
use scr_fhir::bundle::{self, operation_outcome, EntryMode, Issue};

use crate::error::{ApiError, FHIR_JSON};

pub fn fhir_json(status: StatusCode, body: &Value) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, FHIR_JSON))
        .body(serde_json::to_vec(body).unwrap_or_default())
}

/// 406 unless the client accepts FHIR JSON (or anything); `_format` is checked by search parsing.
pub fn check_accept(req: &HttpRequest) -> Result<(), ApiError> {
    let Some(accept) = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(());
    };
    let ok = accept
        .split(',')
        .map(|m| m.split(';').next().unwrap_or("").trim())
        .any(|m| {
            matches!(
                m,
                "*/*"
                    | "application/*"
                    | "application/json"
                    | "application/fhir+json"
                    | "application/json+fhir"
                    | ""
            )
        });
    if ok {
        Ok(())
    } else {
        Err(ApiError::NotAcceptable(format!("Accept: {accept}")))
    }
}

/// Whether the client asked for lenient handling of unknown parameters.
pub fn lenient(req: &HttpRequest) -> bool {
    req.headers()
        .get_all("prefer")
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(';').any(|p| p.trim() == "handling=lenient"))
}

/// The query string as decoded pairs, in order.
pub fn query_pairs(query: &str) -> Result<Vec<(String, String)>, ApiError> {
    let mut out = Vec::new();
    for part in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        out.push((percent_decode(k)?, percent_decode(v)?));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Result<String, ApiError> {
    let malformed = || ApiError::invalid("query", "malformed percent-encoding in the query string");
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                out.push(hex.ok_or_else(malformed)?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| ApiError::invalid("query", "the query string is not UTF-8"))
}

/// The clinically relevant date of a resource, for newest-first ordering.
pub fn sort_date(resource: &Value) -> String {
    for key in [
        "effectiveDateTime",
        "recordedDate",
        "onsetDateTime",
        "authoredOn",
        "dateAsserted",
    ] {
        if let Some(s) = resource[key].as_str() {
            return s.to_owned();
        }
    }
    for key in ["effectivePeriod", "period"] {
        if let Some(s) = resource[key]["start"].as_str() {
            return s.to_owned();
        }
    }
    String::new()
}

fn type_order(resource_type: &str) -> u8 {
    match resource_type {
        "Patient" => 0,
        "Flag" => 1,
        "AllergyIntolerance" => 2,
        "MedicationStatement" => 3,
        "Observation" => 4,
        _ => 5,
    }
}

/// Orders resources for an opened record: active Flags first, most urgent first; then by type;
/// newest first within a type; id last so the order is total and paging is stable.
pub fn record_order(a: &Value, b: &Value) -> std::cmp::Ordering {
    let key = |r: &Value| {
        let rt = r["resourceType"].as_str().unwrap_or_default();
        let active_flag = rt == "Flag" && r["status"] == "active";
        let group = if active_flag { 0 } else { 1 + type_order(rt) };
        let rank = if active_flag { flag_rank(r) } else { 0 };
        (group, rank)
    };
    key(a)
        .cmp(&key(b))
        .then_with(|| sort_date(b).cmp(&sort_date(a)))
        .then_with(|| a["id"].as_str().cmp(&b["id"].as_str()))
}

/// The identifier of a generated Bundle: unique enough to correlate with the server log.
pub fn bundle_id() -> String {
    let mut bytes = [0u8; 12];
    if openssl::rand::rand_bytes(&mut bytes).is_err() {
        return "bundle".into();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Adds an OperationOutcome entry (search mode `outcome`) carrying the warnings, if any.
pub fn outcome_entry(base_url: &str, warnings: &[Issue]) -> Option<Value> {
    if warnings.is_empty() {
        return None;
    }
    let mut oo = operation_outcome(warnings);
    oo["id"] = format!("warnings-{}", bundle_id()).into();
    Some(bundle::entry(base_url, oo, EntryMode::Outcome))
}

/// 415 unless the request body's media type is one of `accepted`.
pub fn require_media_type(req: &HttpRequest, accepted: &[&str]) -> Result<(), ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim();
    if accepted.contains(&media) {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(if media.is_empty() {
            "(none)".into()
        } else {
            media.to_owned()
        }))
    }
}

/// The body of an operation: a FHIR `Parameters` resource in JSON. 415 for another media type,
/// 400 for anything else.
pub fn parameters_body(req: &HttpRequest, body: &[u8]) -> Result<Value, ApiError> {
    require_media_type(req, &["application/fhir+json", "application/json"])?;
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid("Parameters", format!("the body is not JSON: {e}")))?;
    if v["resourceType"] != "Parameters" {
        return Err(ApiError::invalid(
            "Parameters",
            "the body must be a FHIR Parameters resource",
        ));
    }
    Ok(v)
}
