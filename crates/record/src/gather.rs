//! Fan-out to every source, concurrently, each bounded by the source timeout. A source that is
//! down or slow does not fail the request: it is named in the answer's warnings, and the kinds
//! of fact it holds become unknown to the policy. Only when every source fails is the request
//! itself unavailable.

use std::sync::Arc;

use futures_util::future::join_all;
use serde_json::{json, Value};

use scr_fhir::build;
use scr_fhir::bundle::{Issue, Severity};
use scr_policy::{Sourced, Unanswered};
pub use scr_source::Wanted;
use scr_source::{
    ObjectionStatement, PatientFragment, PatientQuery, PatientRecords, Relationship, Source,
    SourceError,
};

use crate::{RecordError, Records};

/// Runs one blocking source call on the blocking pool, bounded by the source timeout, and
/// counts it: `scr_source_duration_seconds`, `scr_source_errors_total` and
/// `scr_source_timeouts_total`, by source name (docs/operations.md).
pub(crate) async fn call<T, F>(
    records: &Records,
    source: &Arc<dyn Source>,
    f: F,
) -> Result<T, SourceError>
where
    T: Send + 'static,
    F: FnOnce(&dyn Source) -> Result<T, SourceError> + Send + 'static,
{
    let started = std::time::Instant::now();
    let result = bounded(records, source, f).await;
    count(source.name(), started, result.as_ref().err());
    result
}

/// Counts one call to a source or neighbouring record, by its configured name (never a path,
/// id or patient).
pub(crate) fn count(name: &str, started: std::time::Instant, error: Option<&SourceError>) {
    let name = name.to_owned();
    metrics::histogram!("scr_source_duration_seconds", "source" => name.clone())
        .record(started.elapsed().as_secs_f64());
    match error {
        None => {}
        Some(SourceError::Timeout { .. }) => {
            metrics::counter!("scr_source_timeouts_total", "source" => name).increment(1)
        }
        Some(_) => metrics::counter!("scr_source_errors_total", "source" => name).increment(1),
    }
}

/// [`call`] without counting it: health checks, which must not skew the sources' latency.
pub(crate) async fn bounded<T, F>(
    records: &Records,
    source: &Arc<dyn Source>,
    f: F,
) -> Result<T, SourceError>
where
    T: Send + 'static,
    F: FnOnce(&dyn Source) -> Result<T, SourceError> + Send + 'static,
{
    let s = Arc::clone(source);
    let name = source.name().to_owned();
    match actix_rt::time::timeout(
        records.source_timeout,
        actix_rt::task::spawn_blocking(move || f(s.as_ref())),
    )
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

/// What a fan-out brought back: the answers, a warning per failed source, and what each failed
/// source would have told the policy.
struct FannedOut<T> {
    /// Each answering source's name and answer.
    answers: Vec<(String, T)>,
    warnings: Vec<Issue>,
    unanswered: Vec<Unanswered>,
}

/// The Bundle's warning for a source (or neighbouring record) that did not answer, logged
/// without identifiers; a neighbour's refusal carries the reason it gave its user.
pub(crate) fn missing(description: &str, e: &SourceError) -> Issue {
    log::warn!("{e}");
    let why = match e {
        SourceError::Timeout { .. } => "did not answer in time".to_owned(),
        SourceError::Refused { reason, .. } if !reason.is_empty() => format!("refused: {reason}"),
        SourceError::Refused { .. } => "refused the request".to_owned(),
        _ => "is unavailable".to_owned(),
    };
    Issue::new(
        Severity::Warning,
        "incomplete",
        format!("{description} {why}: its records are missing from this response"),
    )
}

/// Calls every source `asked` picks; returns the successful answers and a warning per failed
/// source.
async fn fan_out<T, F>(
    records: &Records,
    asked: impl Fn(&dyn Source) -> bool,
    f: F,
) -> Result<FannedOut<T>, RecordError>
where
    T: Send + 'static,
    F: Fn(&dyn Source) -> Result<T, SourceError> + Send + Sync + Clone + 'static,
{
    let asked: Vec<&Arc<dyn Source>> = records
        .sources
        .iter()
        .filter(|s| asked(s.as_ref()))
        .collect();
    let calls = asked.iter().map(|&s| {
        let f = f.clone();
        async move { (s, call(records, s, move |src| f(src)).await) }
    });
    let mut answers = Vec::new();
    let mut warnings = Vec::new();
    let mut unanswered = Vec::new();
    for (source, result) in join_all(calls).await {
        let description = source.description();
        match result {
            Ok(v) => answers.push((source.name().to_owned(), v)),
            Err(e) => {
                let feeds = source.feeds();
                unanswered.push(Unanswered {
                    source: source.name().to_owned(),
                    description: description.clone(),
                    relationships: feeds.relationships,
                    objections: feeds.objections,
                });
                warnings.push(missing(&description, &e));
            }
        }
    }
    if answers.is_empty() && !asked.is_empty() {
        return Err(RecordError::Unavailable {
            detail: "every source failed".into(),
        });
    }
    Ok(FannedOut {
        answers,
        warnings,
        unanswered,
    })
}

/// Everything visible-or-not the sources hold about one patient, before the policy.
pub struct PatientView {
    pub nhs_number: String,
    pub records: PatientRecords,
    /// One warning per source that did not answer.
    pub warnings: Vec<Issue>,
    /// Relationships, each with the source that gave it.
    pub relationships: Vec<Sourced<Relationship>>,
    /// Objection statements, each with the source that gave it.
    pub objections: Vec<Sourced<ObjectionStatement>>,
    /// The sources that did not answer, and the kinds of fact they hold.
    pub unanswered: Vec<Unanswered>,
}

/// Every source's answer for `nhs`, with only the records `wanted` includes (a source may
/// send more; they are dropped here, so every path sees the same thing).
pub(crate) async fn view(
    records: &Records,
    nhs: &str,
    wanted: Wanted,
) -> Result<PatientView, RecordError> {
    let n = nhs.to_owned();
    let out = fan_out(
        records,
        |s| s.needed_for(wanted),
        move |s| s.patient_records(&n, wanted),
    )
    .await?;
    let mut all = PatientRecords::default();
    let mut relationships = Vec::new();
    let mut objections = Vec::new();
    for (source, mut a) in out.answers {
        relationships.extend(
            a.relationships
                .drain(..)
                .map(|r| Sourced::new(source.clone(), r)),
        );
        objections.extend(
            a.objections
                .drain(..)
                .map(|o| Sourced::new(source.clone(), o)),
        );
        all.extend(a);
    }
    all.records.retain(|r| wanted.includes(r.resource_type));
    Ok(PatientView {
        nhs_number: nhs.to_owned(),
        records: all,
        warnings: out.warnings,
        relationships,
        objections,
        unanswered: out.unanswered,
    })
}

/// NHS numbers matching a Patient query, across every source.
pub(crate) async fn find_patients(
    records: &Records,
    query: PatientQuery,
) -> Result<(Vec<String>, Vec<Issue>), RecordError> {
    let out = fan_out(records, |_| true, move |s| s.find_patients(&query)).await?;
    let mut all: Vec<String> = out.answers.into_iter().flat_map(|(_, a)| a).collect();
    all.sort();
    all.dedup();
    Ok((all, out.warnings))
}

/// Reads one record from the source its id names.
pub(crate) async fn read_record(
    records: &Records,
    source: &Arc<dyn Source>,
    resource_type: &'static str,
    key: String,
) -> Result<Option<scr_source::Record>, RecordError> {
    call(records, source, move |s| s.read(resource_type, &key))
        .await
        .map_err(|e| {
            log::warn!("{e}");
            match e {
                SourceError::Timeout { .. } => RecordError::Timeout {
                    detail: e.to_string(),
                },
                _ => RecordError::Unavailable {
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
