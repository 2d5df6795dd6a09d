//! `Consent`: objections to sharing registered in the shared care record (R-OBJ-1) and their
//! withdrawal by a newer statement (R-OBJ-5). The effect is immediate: the next read by anyone
//! goes by the latest statement, whether it is here or in the GP record.
//!
//! - `POST /Consent`: a user of the patient's registered practice (clinical or clinical
//!   support profile, token scope allowing `Consent` create). 201 with `Location`; 400 naming
//!   the element at fault; 401; 403 (R-OBJ-1, R-ROLE-2, scopes); 404 (unknown NHS number); 415.
//! - `GET /Consent?patient=...`: privacy officers, and a patient for themself (R-OBJ-6).
//! - `GET /Consent/{id}`: the same callers; 404 otherwise, as for an unknown id.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use scr_fhir::bundle::{entry, searchset, EntryMode};
use scr_fhir::search::parse_patient_reference;
use scr_policy::{Action, Ask};
use scr_store::consent::{ConsentRow, NewConsent};

use crate::access::{authenticate, Access};
use crate::audit::{self, Subtype};
use crate::error::ApiError;
use crate::respond::{check_accept, fhir_json, query_pairs, require_media_type};
use crate::state::AppState;

/// The stored statement as served: its row id, and who registered it.
fn served(row: &ConsentRow) -> Result<Value, ApiError> {
    let mut v: Value = serde_json::from_str(&row.resource).map_err(ApiError::internal)?;
    v["id"] = row.id.to_string().into();
    v["meta"] = json!({
        "lastUpdated": row.recorded_at,
        "tag": [scr_fhir::build::coding(scr_fhir::systems::ODS_CODE, &row.org, None)],
    });
    Ok(v)
}

pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    require_media_type(&req, &["application/fhir+json", "application/json"])?;
    let mut resource: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid("Consent", format!("the body is not JSON: {e}")))?;
    let statement = scr_fhir::consent::check_objection(&resource, scr_fhir::build::unix_now())
        .map_err(ApiError::Invalid)?;
    let access = match authenticate(&state, &req) {
        Ok(access) => access,
        Err(e) => return audit::finish(&state, &req, None, Subtype::Create, Err(e)).await,
    };
    let result = authorise_create(&state, &access, &statement.nhs_number).await;
    if let Err(e) = result {
        return audit::finish(&state, &req, Some(&access), Subtype::Create, Err(e)).await;
    }
    // Audited first, stored second: a statement never takes effect unaudited.
    let placeholder = HttpResponse::Accepted().finish();
    audit::finish(
        &state,
        &req,
        Some(&access),
        Subtype::Create,
        Ok(placeholder),
    )
    .await?;

    let (_, now) = scr_fhir::build::today_and_now();
    if let Some(obj) = resource.as_object_mut() {
        obj.remove("id");
        obj.remove("meta");
    }
    let text = resource.to_string();
    // Never later than its recording (a dateTime within the allowed clock skew is clamped).
    let effective = match statement.date_time.clone() {
        Some(t) if t.len() > 10 && t > now => now.clone(),
        Some(t) => t,
        None => now.clone(),
    };
    let (org, user) = (
        access.caller.organisation.clone().unwrap_or_default(),
        access.caller.subject.clone(),
    );
    let row = state
        .records
        .with_store(move |conn| {
            let new = NewConsent {
                nhs_number: &statement.nhs_number,
                objects: statement.objects,
                effective: &effective,
                recorded_at: &now,
                org: &org,
                user_id: &user,
                resource: &text,
            };
            let id = scr_store::consent::insert_consent(conn, &new)?;
            scr_store::consent::consent_by_id(conn, id)
        })
        .await?
        .ok_or_else(|| ApiError::internal("a stored consent statement could not be read back"))?;
    let body = served(&row)?;
    Ok(HttpResponse::build(StatusCode::CREATED)
        .insert_header((
            header::LOCATION,
            format!("{}/Consent/{}", state.base_url, row.id),
        ))
        .insert_header((header::CONTENT_TYPE, crate::error::FHIR_JSON))
        .body(body.to_string()))
}

async fn authorise_create(state: &AppState, access: &Access, nhs: &str) -> Result<(), ApiError> {
    state
        .records
        .authorise(access, nhs, Ask::WriteObjection)
        .await?;
    Ok(())
}

/// The patient whose statements are asked for: a patient's own when they name none.
fn patient_asked(access: &Access, asked: Option<String>) -> Option<String> {
    asked.or_else(|| scr_policy::patient_scope(&access.subject).map(str::to_owned))
}

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

async fn search_as(
    state: &AppState,
    req: &HttpRequest,
    access: &Access,
) -> Result<HttpResponse, ApiError> {
    state.records.require(access, "Consent", Action::Search)?;
    let mut asked = None;
    for (key, value) in query_pairs(req.query_string())? {
        match key.as_str() {
            "patient" => {
                asked = Some(
                    parse_patient_reference(&value).map_err(|m| ApiError::invalid("patient", m))?,
                )
            }
            other => {
                return Err(ApiError::invalid(
                    other,
                    format!("unknown search parameter '{other}' for Consent; use patient"),
                ))
            }
        }
    }
    let nhs = patient_asked(access, asked).ok_or_else(|| {
        ApiError::invalid(
            "patient",
            "a Consent search needs patient=Patient/{NHS number}",
        )
    })?;
    state.records.permit(
        access,
        Ask::Consents {
            action: Action::Search,
        },
        Some(&nhs),
    )?;
    let key = nhs.clone();
    let rows = state
        .records
        .with_store(move |conn| scr_store::consent::consents_for(conn, &key))
        .await?;
    let mut entries = Vec::new();
    for row in rows.iter().rev() {
        entries.push(entry(&state.base_url, served(row)?, EntryMode::Match));
    }
    let (_, now) = scr_fhir::build::today_and_now();
    let links = [("self", format!("{}/Consent?patient={nhs}", state.base_url))];
    Ok(fhir_json(
        StatusCode::OK,
        &searchset(&access.request_id, &now, Some(rows.len()), &links, entries),
    ))
}

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
    let records = &state.records;
    records.require(access, "Consent", Action::Read)?;
    let Ok(row_id) = id.parse::<i64>() else {
        return Err(ApiError::not_found("Consent", id));
    };
    let row = records
        .with_store(move |conn| scr_store::consent::consent_by_id(conn, row_id))
        .await?
        .ok_or_else(|| ApiError::not_found("Consent", id))?;
    // Someone else's statement reads exactly as an id that does not exist.
    let ask = Ask::Consents {
        action: Action::Read,
    };
    let decision = records.decide(access, ask, Some(&row.nhs_number), None, &[]);
    if !decision.permitted {
        return Err(ApiError::not_found("Consent", id));
    }
    access.touch(&row.nhs_number, &decision);
    Ok(fhir_json(StatusCode::OK, &served(&row)?))
}
