//! `GET /{type}?params` and `POST /{type}/_search` (form-encoded): a searchset Bundle.
//!
//! Clinical types are searched within one patient (`patient=` is required): the patient's
//! records are fetched from every source in one batch, passed through the policy, then matched,
//! ordered (active alerts first, newest first), counted and paged. `Bundle.total` counts only
//! what the caller may see. Patient searches go by NHS number or family name with birth date.
//!
//! Statuses: 200; 400 (unknown parameter without `Prefer: handling=lenient`, malformed NHS
//! number or date, missing patient); 401; 403; 406; 415 (`_search` body not form-encoded); 503.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::Value;

use scr_fhir::bundle::{entry, searchset, EntryMode, Issue, Severity};
use scr_fhir::nhs_number;
use scr_fhir::search::{self, Criterion, SearchRequest};
use scr_policy::Action;
use scr_record::Wanted;
use scr_source::PatientQuery;

use super::served_type;
use crate::access::Access;
use crate::audit::{self, Subtype};
use crate::error::ApiError;
use crate::respond::{
    check_accept, fhir_json, lenient, outcome_entry, query_pairs, record_order, require_media_type,
};
use crate::state::AppState;

pub async fn search_get(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let pairs = query_pairs(req.query_string())?;
    run(&state, &req, &path.into_inner(), pairs).await
}

pub async fn search_post(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    require_media_type(&req, &["application/x-www-form-urlencoded"])?;
    let body = std::str::from_utf8(&body)
        .map_err(|_| ApiError::invalid("body", "the form body is not UTF-8"))?;
    let mut pairs = query_pairs(req.query_string())?;
    pairs.extend(query_pairs(body)?);
    run(&state, &req, &path.into_inner(), pairs).await
}

async fn run(
    state: &AppState,
    req: &HttpRequest,
    type_name: &str,
    pairs: Vec<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let resource_type = served_type(type_name)?;
    check_accept(req)?;
    audit::audited(state, req, Subtype::Search, async |access| {
        search_as(state, req, access, resource_type, &pairs).await
    })
    .await
}

async fn search_as(
    state: &AppState,
    req: &HttpRequest,
    access: &Access,
    resource_type: &'static str,
    pairs: &[(String, String)],
) -> Result<HttpResponse, ApiError> {
    state
        .records
        .require(access, resource_type, Action::Search)?;
    let request = search::parse(resource_type, pairs, lenient(req)).map_err(ApiError::Invalid)?;
    let mut warnings: Vec<Issue> = request
        .ignored
        .iter()
        .map(|p| {
            Issue::new(
                Severity::Warning,
                "not-supported",
                format!(
                    "parameter '{p}' is not supported and was ignored (Prefer: handling=lenient)"
                ),
            )
        })
        .collect();

    let (matches, included) = if resource_type == "Patient" {
        (
            search_patients(state, access, &request, &mut warnings).await?,
            Vec::new(),
        )
    } else {
        search_clinical(state, access, &request, &mut warnings).await?
    };

    let total = matches.len();
    let self_query = request.canonical_query(pairs);
    let link = |offset: usize| {
        let sep = if self_query.is_empty() { "" } else { "&" };
        format!(
            "{}/{}?{}{}_count={}&_offset={}",
            state.base_url, resource_type, self_query, sep, request.count, offset
        )
    };
    let mut links = vec![("self", link(request.offset))];
    let mut entries = Vec::new();
    if !request.summary_count {
        let page: Vec<Value> = matches
            .into_iter()
            .skip(request.offset)
            .take(request.count)
            .collect();
        // Saturating: `_offset` is the client's, and may be near the largest number there is.
        let next = request.offset.saturating_add(request.count);
        // `_count=0` asks for no entries: a `next` link would equal `self`, and a client that
        // follows links would loop for ever.
        if request.count > 0 && next < total {
            links.push(("next", link(next)));
        }
        if request.count > 0 && request.offset > 0 {
            links.push((
                "previous",
                link(request.offset.saturating_sub(request.count)),
            ));
        }
        let include_patient = request.include_patient && !page.is_empty();
        entries.extend(
            page.into_iter()
                .map(|r| entry(&state.base_url, r, EntryMode::Match)),
        );
        if include_patient {
            entries.extend(
                included
                    .into_iter()
                    .map(|r| entry(&state.base_url, r, EntryMode::Include)),
            );
        }
    }
    entries.extend(outcome_entry(&state.base_url, &warnings));
    let (_, now) = scr_fhir::build::today_and_now();
    Ok(fhir_json(
        StatusCode::OK,
        &searchset(&access.request_id, &now, Some(total), &links, entries),
    ))
}

/// The caller's visible records of one type for one patient, matched and ordered, and the merged
/// Patient for `_include`.
async fn search_clinical(
    state: &AppState,
    access: &Access,
    request: &SearchRequest,
    warnings: &mut Vec<Issue>,
) -> Result<(Vec<Value>, Vec<Value>), ApiError> {
    let resource_type = served_type(&request.resource_type)?;
    if let Some(ids) = request.ids() {
        return Ok((
            search_by_id(state, access, request, resource_type, &ids).await?,
            Vec::new(),
        ));
    }
    let nhs = request
        .patient()
        .ok_or_else(|| ApiError::invalid("patient", "a patient is required"))?
        .to_owned();
    let opened = state
        .records
        .open(access, &nhs, Action::Search, Wanted::OfType(resource_type))
        .await?;
    warnings.extend(opened.warnings);
    let mut matches: Vec<Value> = opened
        .records
        .into_iter()
        .filter(|r| r.resource_type == request.resource_type && request.matches(&r.resource))
        .map(|r| r.resource)
        .collect();
    matches.sort_by(record_order);
    let mut included = Vec::new();
    if request.include_patient && state.records.may(access, "Patient", Action::Read) {
        included.push(opened.patient);
    }
    Ok((matches, included))
}

/// `_id` on a clinical type: each record read by id, as `GET /{type}/{id}` would (a record the
/// caller may not see is simply not a match), then held to the search's other criteria and,
/// when one is named, to the patient.
async fn search_by_id(
    state: &AppState,
    access: &Access,
    request: &SearchRequest,
    resource_type: &'static str,
    ids: &[String],
) -> Result<Vec<Value>, ApiError> {
    let patient_reference = request.patient().map(|p| format!("Patient/{p}"));
    let mut out = Vec::new();
    for id in ids {
        match state.records.read(access, resource_type, id).await {
            Ok(record) => {
                let subject = record.resource["subject"]["reference"]
                    .as_str()
                    .or(record.resource["patient"]["reference"].as_str());
                let for_patient = patient_reference
                    .as_deref()
                    .is_none_or(|p| subject == Some(p));
                if for_patient && request.matches(&record.resource) {
                    out.push(record.resource);
                }
            }
            Err(scr_record::RecordError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    out.sort_by(record_order);
    Ok(out)
}

async fn search_patients(
    state: &AppState,
    access: &Access,
    request: &SearchRequest,
    warnings: &mut Vec<Issue>,
) -> Result<Vec<Value>, ApiError> {
    let mut query = None;
    for (def, values) in &request.criteria {
        if let [Criterion::Token(t)] = values.as_slice() {
            if matches!(def.name, "identifier" | "_id") {
                if let Some(code) = &t.code {
                    // An identifier of another system (a hospital number) names no one here:
                    // an empty searchset, never a match on its digits.
                    let nhs = def.name == "_id"
                        || t.system.as_deref() == Some(scr_fhir::systems::NHS_NUMBER);
                    query = Some(PatientQuery::NhsNumber(if nhs {
                        code.clone()
                    } else {
                        String::new()
                    }));
                }
            }
        }
    }
    if query.is_none() {
        let family = request
            .criteria
            .iter()
            .find_map(|(d, v)| match (d.name, v.as_slice()) {
                ("family", [Criterion::String(s)]) => Some(s.clone()),
                _ => None,
            });
        let birth_date = request
            .criteria
            .iter()
            .find_map(|(d, v)| match (d.name, v.as_slice()) {
                // A birth date is a calendar day, not an instant: the value as sent.
                ("birthdate", [Criterion::Date(p)])
                    if p.prefix == search::Prefix::Eq
                        && p.value.len() == 10
                        && scr_fhir::build::is_date(&p.value) =>
                {
                    Some(p.value.clone())
                }
                _ => None,
            });
        if let Some(family) = family {
            // A family name alone, or with a range of birth dates, sweeps the region: every
            // match would be opened in every source and audited.
            let birth_date = birth_date.ok_or_else(|| {
                ApiError::invalid(
                    "birthdate",
                    "a search by family needs birthdate with an exact day (birthdate=YYYY-MM-DD)",
                )
            })?;
            if family.trim().is_empty() {
                return Err(ApiError::invalid("family", "family must not be empty"));
            }
            query = Some(PatientQuery::FamilyAndBirthDate { family, birth_date });
        }
    }
    let query = query.ok_or_else(|| {
        ApiError::invalid(
            "identifier",
            "a Patient search needs identifier (NHS number), _id, or family with birthdate",
        )
    })?;
    let mut numbers = match query {
        // An NHS number names at most one person: opening the record finds out whether any
        // source knows them (a 404 is simply no match), so asking every source first is a
        // second round trip for nothing.
        PatientQuery::NhsNumber(nhs) if nhs_number::is_valid(&nhs) => vec![nhs],
        PatientQuery::NhsNumber(_) => Vec::new(),
        query => {
            let (numbers, find_warnings) = state.records.find_patients(query).await?;
            warnings.extend(find_warnings);
            numbers
        }
    };
    // A patient searching finds only themself; anyone else is simply not a match.
    if let Some(own) = scr_policy::patient_scope(&access.subject) {
        numbers.retain(|n| n == own);
    }
    // A search opens (and audits) at most one page of people.
    let page = match request.count {
        0 => search::DEFAULT_COUNT,
        n => n,
    };
    if numbers.len() > page {
        numbers.truncate(page);
        warnings.push(Issue::new(
            Severity::Warning,
            "too-costly",
            format!(
                "more people match than the {page} opened; refine the search with an NHS number"
            ),
        ));
    }
    let mut out = Vec::new();
    let mut refusal = None;
    for nhs in numbers {
        match state
            .records
            .open(access, &nhs, Action::Search, Wanted::Context)
            .await
            .map_err(ApiError::from)
        {
            Ok(opened) => {
                for w in opened.warnings {
                    if !warnings.contains(&w) {
                        warnings.push(w);
                    }
                }
                if request.matches(&opened.patient) {
                    out.push(opened.patient);
                }
            }
            Err(ApiError::NotFound { .. }) => {}
            Err(e @ ApiError::Forbidden { .. }) => refusal = Some(e),
            Err(e) => return Err(e),
        }
    }
    // R-LR-5: people found but none the caller may open is a refusal, not an empty result.
    match refusal {
        Some(e) if out.is_empty() => Err(e),
        _ => Ok(out),
    }
}
