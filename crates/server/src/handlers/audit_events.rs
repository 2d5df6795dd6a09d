//! `GET /AuditEvent?...`: the audit trail for privacy officers (R-AUD-4) and for a patient over
//! their own record (R-AUD-5).
//!
//! Parameters: `patient` (Patient/{NHS number}), `agent` (the user's id, token `sub`),
//! `agent-org` (ODS code), `outcome` (0 success, 4 refused, 8 failed), `date` (`eq`, `ge`, `le`),
//! `break-glass=true` (accesses under a self-claimed relationship, for review), `_count`,
//! `_offset`. Newest first. A patient sees only events about themself, and sees who accessed
//! their record by organisation and role, not by personal identifier.
//!
//! Statuses: 200; 400 (unknown parameter without `Prefer: handling=lenient`, bad value); 401;
//! 403 (any profile but privacy officer and patient; a patient asking about someone else); 503.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::Value;

use scr_fhir::bundle::{entry, searchset, EntryMode, Issue, Severity};
use scr_fhir::search::{parse_date, parse_patient_reference, Prefix, DEFAULT_COUNT, MAX_COUNT};
use scr_policy::{Action, Ask};
use scr_store::audit::{search_audit, AuditFilter};

use crate::access::Access;
use crate::audit::{self, Subtype};
use crate::error::ApiError;
use crate::respond::{check_accept, fhir_json, lenient, outcome_entry, query_pairs};
use crate::state::AppState;

pub async fn search(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    check_accept(&req)?;
    audit::audited(&state, &req, Subtype::Search, async |access| {
        search_as(&state, &req, access).await
    })
    .await
}

/// `GET /AuditEvent/{id}`: one record of the trail, at the `fullUrl` a search gave it, for the
/// callers who may search it and with the same view (a patient: only their own record's
/// events, redacted). Any other id is 404, as for one that does not exist.
pub async fn read(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    check_accept(&req)?;
    let id = path.into_inner();
    audit::audited(&state, &req, Subtype::Read, async |access| {
        read_as(&state, access, &id).await
    })
    .await
}

async fn read_as(state: &AppState, access: &Access, id: &str) -> Result<HttpResponse, ApiError> {
    state.records.require(access, "AuditEvent", Action::Read)?;
    let own = scr_policy::patient_scope(&access.subject);
    let patient_caller = own.is_some();
    let filter = AuditFilter {
        seq: Some(
            id.parse::<i64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| ApiError::not_found("AuditEvent", id))?,
        ),
        patient_nhs: own.map(str::to_owned),
        ..AuditFilter::default()
    };
    state
        .records
        .permit(access, Ask::AuditTrail, filter.patient_nhs.as_deref())?;
    let (rows, _) = state
        .records
        .with_store(move |conn| search_audit(conn, &filter, 0, 1))
        .await?;
    let row = rows
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::not_found("AuditEvent", id))?;
    let mut event: Value = serde_json::from_str(&row.resource).map_err(ApiError::internal)?;
    event["id"] = row.seq.to_string().into();
    if patient_caller {
        redact_people(&mut event);
    }
    Ok(fhir_json(StatusCode::OK, &event))
}

fn number(key: &str, value: &str) -> Result<i64, ApiError> {
    value
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| {
            ApiError::invalid(key, format!("{key} must be a whole number, not '{value}'"))
        })
}

async fn search_as(
    state: &AppState,
    req: &HttpRequest,
    access: &Access,
) -> Result<HttpResponse, ApiError> {
    state
        .records
        .require(access, "AuditEvent", Action::Search)?;
    let pairs = query_pairs(req.query_string())?;
    let mut filter = AuditFilter::default();
    let (mut count, mut offset) = (DEFAULT_COUNT as i64, 0);
    let mut warnings = Vec::new();
    for (key, value) in &pairs {
        match key.as_str() {
            "patient" => filter.patient_nhs = Some(parse_patient_reference(value).map_err(|m| ApiError::invalid("patient", m))?),
            "_id" => filter.seq = Some(value.parse::<i64>().map_err(|_| ApiError::invalid("_id", "an AuditEvent id is a whole number"))?),
            "agent" => filter.agent_user = Some(value.clone()),
            "agent-org" => filter.agent_org = Some(value.clone()),
            "outcome" if matches!(value.as_str(), "0" | "4" | "8" | "12") => filter.outcome = Some(value.clone()),
            "outcome" => return Err(ApiError::invalid("outcome", "outcome is 0, 4, 8 or 12")),
            "break-glass" if value == "true" => filter.break_glass_only = true,
            "break-glass" => return Err(ApiError::invalid("break-glass", "break-glass takes the value true")),
            "date" => {
                let d = parse_date(value).map_err(|m| ApiError::invalid("date", m))?;
                match d.prefix {
                    // `recorded` is a UTC instant; the bounds honour the value's offset.
                    Prefix::Ge => filter.recorded_from = Some(d.lower_instant()),
                    Prefix::Le => filter.recorded_to = Some(d.upper_instant()),
                    Prefix::Eq => {
                        filter.recorded_from = Some(d.lower_instant());
                        filter.recorded_to = Some(d.upper_instant());
                    }
                    _ => return Err(ApiError::Invalid(vec![Issue::new(Severity::Error, "not-supported", "AuditEvent date takes eq, ge or le").at("date")])),
                }
            }
            "_count" => count = number(key, value)?.min(MAX_COUNT as i64),
            "_offset" => offset = number(key, value)?,
            _ if lenient(req) => warnings.push(Issue::new(Severity::Warning, "not-supported", format!("parameter '{key}' is not supported and was ignored"))),
            _ => {
                return Err(ApiError::Invalid(vec![Issue::new(Severity::Error, "not-supported", format!("unknown search parameter '{key}' for AuditEvent; send Prefer: handling=lenient to ignore it")).at(key.clone())]))
            }
        }
    }
    let own = scr_policy::patient_scope(&access.subject);
    let patient_caller = own.is_some();
    if let Some(own) = own {
        filter.patient_nhs.get_or_insert_with(|| own.to_owned());
    }
    state
        .records
        .permit(access, Ask::AuditTrail, filter.patient_nhs.as_deref())?;
    let (rows, total) = state
        .records
        .with_store(move |conn| search_audit(conn, &filter, offset, count))
        .await?;

    let mut entries = Vec::with_capacity(rows.len());
    for row in rows {
        let mut event: Value = serde_json::from_str(&row.resource).map_err(ApiError::internal)?;
        event["id"] = row.seq.to_string().into();
        if patient_caller {
            redact_people(&mut event);
        }
        entries.push(entry(&state.base_url, event, EntryMode::Match));
    }
    entries.extend(outcome_entry(&state.base_url, &warnings));
    let (_, now) = scr_fhir::build::today_and_now();
    let links = [(
        "self",
        format!("{}/AuditEvent?{}", state.base_url, req.query_string()),
    )];
    Ok(fhir_json(
        StatusCode::OK,
        &searchset(
            &access.request_id,
            &now,
            Some(total as usize),
            &links,
            entries,
        ),
    ))
}

/// What a patient is shown of who accessed their record: organisation, role, when and why (the
/// purpose of use), not the staff member's personal identifier or address, nor what the
/// decision withheld (that would reveal entries kept from the patient, R-SENS-5) or a
/// break-glass reason written for the privacy officer.
fn redact_people(event: &mut Value) {
    for agent in event["agent"].as_array_mut().into_iter().flatten() {
        if agent["requestor"] == true {
            agent["who"] = serde_json::json!({ "display": "a member of staff" });
            if let Some(a) = agent.as_object_mut() {
                a.remove("network");
                // A neighbouring record's user is named there too (R-FED-5).
                a.remove("name");
            }
        }
    }
    for entity in event["entity"].as_array_mut().into_iter().flatten() {
        if let Some(e) = entity.as_object_mut() {
            e.remove("detail");
        }
    }
}
