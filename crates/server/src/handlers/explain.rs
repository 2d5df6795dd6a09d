//! `POST /Patient/{id}/$explain`: why a caller sees what they see. For information governance
//! teams answering "why can't Dr X see this?": given a described caller, the answer lists every
//! access rule evaluated, its outcome and the facts it used (which registration, visit,
//! allocation, objection statement, self-claim, each with its source and date; which sources did
//! not answer), and per resource type how many records that caller would be shown and how many
//! withheld under which rule. Never clinical content.
//!
//! Body: a FHIR `Parameters` resource with `organization` (ODS code), `role` (national RBAC job
//! role code, `R8000`), `user` (their user id), optional `kind` (`staff`, default, `patient` or
//! `system`), `scope` (SMART scopes, default what the kind's profile allows) and `purpose`
//! (`TREAT`, `ETREAT` or `BTG`); for a user of a neighbouring record asking through it
//! (docs/federation.md), `peer` (its configured name) and, when it asserts one, the
//! relationship it established, `relationship-rule` (`R-LR-2`) and `relationship-org` (ODS
//! code). Answer: `Parameters` (see
//! `fhir-profiles/OperationDefinition-explain.json`).
//!
//! Statuses: 200; 400 (a parameter missing or invalid, named); 401; 403 (only the privacy
//! officer profile, R-AUD-4, with a token that reads AuditEvent); 404 (no source knows the NHS
//! number); 415; 503. Audited as an operation of the privacy officer on this patient.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use scr_fhir::nhs_number;
use scr_policy::Ask;
use scr_record::DescribedCaller;

use crate::audit::{self, Subtype};
use crate::error::ApiError;
use crate::respond::{check_accept, fhir_json, parameters_body};
use crate::state::AppState;

const PARAMETERS: [&str; 9] = [
    "organization",
    "role",
    "user",
    "kind",
    "scope",
    "purpose",
    "peer",
    "relationship-rule",
    "relationship-org",
];

/// Reads the described caller from the `Parameters` body, naming the parameter that is wrong.
fn parse_caller(req: &HttpRequest, body: &[u8]) -> Result<DescribedCaller, ApiError> {
    let v = parameters_body(req, body)?;
    let mut described = DescribedCaller::default();
    let (mut relationship_rule, mut relationship_org) = (None, None);
    for p in v["parameter"].as_array().into_iter().flatten() {
        let name = p["name"].as_str().unwrap_or_default();
        let at = format!("Parameters.parameter.where(name='{name}')");
        if !PARAMETERS.contains(&name) {
            return Err(ApiError::invalid(
                &at,
                format!(
                    "unknown parameter '{name}'; $explain takes {}",
                    PARAMETERS.join(", ")
                ),
            ));
        }
        let value = ["valueString", "valueCode"]
            .iter()
            .find_map(|k| p[*k].as_str())
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.len() <= 1000)
            .ok_or_else(|| {
                ApiError::invalid(&at, format!("{name} needs a valueString or valueCode"))
            })?
            .to_owned();
        match name {
            "organization" => described.org = Some(value),
            "role" => described.role_code = Some(value),
            "user" => described.user = value,
            "kind" => described.kind = Some(value),
            "scope" => described.scopes = value,
            "peer" => described.peer = Some(value),
            "relationship-rule" => relationship_rule = Some(value),
            "relationship-org" => relationship_org = Some(value),
            _ => described.purpose = Some(value),
        }
    }
    described.relationship = match (relationship_rule, relationship_org) {
        (Some(rule), Some(org)) => Some((rule, org)),
        (None, None) => None,
        _ => {
            return Err(ApiError::invalid(
                "Parameters.parameter.where(name='relationship-rule')",
                "relationship-rule and relationship-org go together",
            ))
        }
    };
    if described.user.is_empty() {
        return Err(ApiError::invalid(
            "Parameters.parameter.where(name='user')",
            "user is required: the user id (token sub) of the caller to explain",
        ));
    }
    Ok(described)
}

pub async fn explain(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    check_accept(&req)?;
    let described = parse_caller(&req, &body)?;
    audit::audited(&state, &req, Subtype::Operation, async |access| {
        state.records.permit(access, Ask::Explain, Some(&id))?;
        if !nhs_number::is_valid(&id) {
            return Err(ApiError::not_found("Patient", &id));
        }
        let explanation = state.records.explain(&described, &id).await?;
        Ok(fhir_json(StatusCode::OK, &explanation.to_parameters()))
    })
    .await
}
