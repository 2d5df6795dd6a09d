//! `POST /Patient/{id}/$break-glass`: a clinician with no legitimate relationship declares one
//! for this patient (R-LR-4), with a purpose of use and a written reason. It lasts the configured
//! hours (default 12) for that user and patient, is audited as a break-glass event before it takes
//! effect, and every access under it is audited as break-glass too: privacy officers list them
//! with `GET /AuditEvent?break-glass=true`, and the patient sees them in their own access log.
//!
//! Body: a FHIR `Parameters` resource with `purpose` (`valueCode` `ETREAT` emergency treatment or
//! `BTG` break the glass) and `reason` (`valueString`, 10 to 1000 characters).
//!
//! Statuses: 200 (an OperationOutcome saying until when); 400 (a parameter missing or invalid,
//! named); 401; 403 (only clinical profiles may self-claim: not clinical support, social care,
//! privacy officers, patients or backend services); 404 (no source knows the NHS number);
//! 415 (body not FHIR JSON); 503.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use scr_fhir::bundle::{operation_outcome, Issue, Severity};
use scr_store::audit::NewBreakGlass;

use crate::access::{authenticate, Access};
use crate::audit::{self, Subtype};
use crate::error::ApiError;
use crate::respond::{fhir_json, parameters_body};
use crate::state::AppState;

/// The two purposes of use a self-claim may give.
const PURPOSES: [&str; 2] = ["ETREAT", "BTG"];

struct Claim {
    purpose: String,
    reason: String,
}

/// Reads and checks the `Parameters` body, naming the parameter that is wrong.
fn parse_claim(req: &HttpRequest, body: &[u8]) -> Result<Claim, ApiError> {
    let v = parameters_body(req, body)?;
    let param = |name: &str, value_key: &str| -> Option<String> {
        v["parameter"]
            .as_array()?
            .iter()
            .find(|p| p["name"] == name)
            .and_then(|p| p[value_key].as_str())
            .map(str::to_owned)
    };
    let purpose = param("purpose", "valueCode").ok_or_else(|| {
        ApiError::invalid(
            "Parameters.parameter.where(name='purpose').valueCode",
            "purpose is required: ETREAT or BTG",
        )
    })?;
    if !PURPOSES.contains(&purpose.as_str()) {
        return Err(ApiError::invalid(
            "Parameters.parameter.where(name='purpose').valueCode",
            format!("purpose '{purpose}' is not ETREAT or BTG"),
        ));
    }
    let reason = param("reason", "valueString")
        .map(|r| r.trim().to_owned())
        .unwrap_or_default();
    if !(10..=1000).contains(&reason.chars().count()) {
        return Err(ApiError::invalid(
            "Parameters.parameter.where(name='reason').valueString",
            "a written reason of 10 to 1000 characters is required",
        ));
    }
    Ok(Claim { purpose, reason })
}

pub async fn break_glass(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let claim = parse_claim(&req, &body)?;
    let access = match authenticate(&state, &req) {
        Ok(access) => access,
        Err(e) => return audit::finish(&state, &req, None, Subtype::Operation, Err(e)).await,
    };
    let result = claim_as(&state, &access, &id, &claim).await;
    let Ok((response, claimed)) = result else {
        return audit::finish(
            &state,
            &req,
            Some(&access),
            Subtype::Operation,
            result.map(|(r, _)| r),
        )
        .await;
    };
    // The claim is audited first and only then stored: it never takes effect unaudited.
    let response = audit::finish(
        &state,
        &req,
        Some(&access),
        Subtype::Operation,
        Ok(response),
    )
    .await?;
    let (_, now) = scr_fhir::build::today_and_now();
    state
        .records
        .with_store(move |conn| {
            let new = NewBreakGlass {
                user_id: &claimed.user,
                org: &claimed.org,
                nhs_number: &id,
                purpose: &claimed.purpose,
                reason: &claimed.reason,
                claimed_at: &now,
                expires_at: &claimed.expires_at,
            };
            scr_store::audit::insert_break_glass(conn, &new)
        })
        .await?;
    Ok(response)
}

async fn claim_as(
    state: &AppState,
    access: &Access,
    id: &str,
    claim: &Claim,
) -> Result<(HttpResponse, scr_policy::Claim), ApiError> {
    let claimed = state
        .records
        .self_claim(access, id, &claim.purpose, &claim.reason)
        .await?;
    let message = format!(
        "Self-claimed relationship recorded (R-LR-4, purpose {}): it lasts until {}. Every access under it is audited and reviewed by the privacy officer, and shown to the patient.",
        claimed.purpose, claimed.expires_at
    );
    let body = operation_outcome(&[Issue::new(Severity::Information, "informational", message)]);
    Ok((fhir_json(StatusCode::OK, &body), claimed))
}
