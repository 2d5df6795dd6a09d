//! Fan-out to every source, concurrently, each bounded by the source timeout. A source that is
//! down or slow does not fail the request: it is named in the answer's warnings. Only when every
//! source fails is the request itself unavailable.

use std::sync::Arc;

use actix_web::web;
use futures_util::future::join_all;
use serde_json::{json, Value};

use scr_fhir::build;
use scr_fhir::bundle::{Issue, Severity};
pub use scr_source::Wanted;
use scr_source::{PatientFragment, PatientQuery, PatientRecords, Source, SourceError};

use crate::error::ApiError;
use crate::state::AppState;

/// Runs one blocking source call on the blocking pool, bounded by the source timeout.
async fn call<T, F>(state: &AppState, source: &Arc<dyn Source>, f: F) -> Result<T, SourceError>
where
    T: Send + 'static,
    F: FnOnce(&dyn Source) -> Result<T, SourceError> + Send + 'static,
{
    let s = Arc::clone(source);
    let name = source.name().to_owned();
    match actix_web::rt::time::timeout(state.source_timeout, web::block(move || f(s.as_ref())))
        .await
    {
        Ok(Ok(result)) => result,
        Ok(Err(blocking)) => Err(SourceError::Unavailable {
            source_name: name,
            detail: blocking.to_string(),
        }),
        Err(_) => Err(SourceError::Timeout { source_name: name }),
    }
}

/// Calls every source; returns the successful answers and a warning per failed source.
async fn fan_out<T, F>(state: &AppState, f: F) -> Result<(Vec<T>, Vec<Issue>), ApiError>
where
    T: Send + 'static,
    F: Fn(&dyn Source) -> Result<T, SourceError> + Send + Sync + Clone + 'static,
{
    let calls = state.sources.iter().map(|s| {
        let f = f.clone();
        async move { (s.description(), call(state, s, move |src| f(src)).await) }
    });
    let mut answers = Vec::new();
    let mut warnings = Vec::new();
    for (description, result) in join_all(calls).await {
        match result {
            Ok(v) => answers.push(v),
            Err(e) => {
                log::warn!("{e}");
                let why = match e {
                    SourceError::Timeout { .. } => "did not answer in time",
                    _ => "is unavailable",
                };
                warnings.push(Issue::new(
                    Severity::Warning,
                    "incomplete",
                    format!("{description} {why}: its records are missing from this response"),
                ));
            }
        }
    }
    if answers.is_empty() && !state.sources.is_empty() {
        return Err(ApiError::Unavailable {
            detail: "every source failed".into(),
        });
    }
    Ok((answers, warnings))
}

/// Everything visible-or-not the sources hold about one patient, before the policy.
pub struct PatientView {
    pub nhs_number: String,
    pub records: PatientRecords,
    /// One warning per source that did not answer.
    pub warnings: Vec<Issue>,
}

pub async fn patient_view(state: &AppState, nhs: &str) -> Result<PatientView, ApiError> {
    view(state, nhs, Wanted::Everything).await
}

/// Every source's answer for `nhs`, with only the records `wanted` includes (a source may
/// send more; they are dropped here, so every path sees the same thing).
pub async fn view(state: &AppState, nhs: &str, wanted: Wanted) -> Result<PatientView, ApiError> {
    let n = nhs.to_owned();
    let (answers, warnings) = fan_out(state, move |s| s.patient_records(&n, wanted)).await?;
    let mut records = PatientRecords::default();
    for a in answers {
        records.extend(a);
    }
    records.records.retain(|r| wanted.includes(r.resource_type));
    Ok(PatientView {
        nhs_number: nhs.to_owned(),
        records,
        warnings,
    })
}

/// NHS numbers matching a Patient query, across every source.
pub async fn find_patients(
    state: &AppState,
    query: PatientQuery,
) -> Result<(Vec<String>, Vec<Issue>), ApiError> {
    let (answers, warnings) = fan_out(state, move |s| s.find_patients(&query)).await?;
    let mut all: Vec<String> = answers.into_iter().flatten().collect();
    all.sort();
    all.dedup();
    Ok((all, warnings))
}

/// Reads one record from the source its id names.
pub async fn read_record(
    state: &AppState,
    source: &Arc<dyn Source>,
    resource_type: &'static str,
    key: String,
) -> Result<Option<scr_source::Record>, ApiError> {
    call(state, source, move |s| s.read(resource_type, &key))
        .await
        .map_err(|e| {
            log::warn!("{e}");
            match e {
                SourceError::Timeout { .. } => ApiError::Timeout {
                    detail: e.to_string(),
                },
                _ => ApiError::Unavailable {
                    detail: e.to_string(),
                },
            }
        })
}

/// Merges demographics fragments into the one Patient the facade serves: the preferred fragment
/// (GP first) is the base; elements it lacks are filled from the next; identifiers from every
/// source are kept; `meta.tag` names every contributing organisation and source.
pub fn merge_patient(nhs: &str, fragments: &[PatientFragment]) -> Option<Value> {
    let mut ordered: Vec<&PatientFragment> = fragments.iter().collect();
    ordered.sort_by(|a, b| {
        a.priority
            .cmp(&b.priority)
            .then_with(|| b.last_updated.cmp(&a.last_updated))
    });
    let first = ordered.first()?;
    let mut patient = first.resource.clone();
    let mut identifiers: Vec<Value> = Vec::new();
    let mut tags: Vec<Value> = Vec::new();
    let mut last_updated = String::new();
    for f in &ordered {
        if let (Some(target), Some(source)) = (patient.as_object_mut(), f.resource.as_object()) {
            for (k, v) in source {
                if !target.contains_key(k) {
                    target.insert(k.clone(), v.clone());
                }
            }
        }
        for id in f.resource["identifier"].as_array().into_iter().flatten() {
            if !identifiers.contains(id) {
                identifiers.push(id.clone());
            }
        }
        // Tags come from the fragment's provenance, not its JSON, so every source is labelled.
        for tag in [
            build::coding(scr_fhir::systems::ODS_CODE, &f.source_org, None),
            build::coding(scr_fhir::systems::SOURCE_SYSTEM_TAG, &f.source_name, None),
        ] {
            if !tags.contains(&tag) {
                tags.push(tag);
            }
        }
        if let Some(lu) = f.resource["meta"]["lastUpdated"].as_str() {
            if lu > last_updated.as_str() {
                last_updated = lu.to_owned();
            }
        }
    }
    patient["id"] = nhs.into();
    patient["identifier"] = Value::Array(identifiers);
    let mut meta = json!({
        "profile": [scr_fhir::systems::uk_core_profile("Patient")],
        "source": if ordered.len() == 1 { format!("urn:scr:source:{}", first.source_name) } else { "urn:scr:merged".into() },
        "tag": tags,
    });
    if !last_updated.is_empty() {
        meta["lastUpdated"] = last_updated.into();
    }
    patient["meta"] = meta;
    build::prune(&mut patient);
    Some(patient)
}
