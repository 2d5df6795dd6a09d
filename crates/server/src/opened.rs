//! Opening one patient's record for one caller: fetch from every source, build the patient's
//! context (relationships, objection), ask the policy whether the caller may open it at all, then
//! keep only the demographics and records the policy lets leave. Every read path goes through
//! [`open`], so a withheld record can leave no trace in any of them (R-SENS-4).

use scr_auth::Interaction;
use scr_fhir::build::days_of;
use scr_fhir::bundle::{Issue, Severity};
use scr_policy::{CareLink, PatientContext, RecordLabels, Visibility};
use scr_source::{ObjectionStatement, PatientFragment, Record, Relationship};
use serde_json::{json, Value};

use crate::access::Access;
use crate::error::ApiError;
pub use crate::gather::Wanted;
use crate::gather::{merge_patient, view, PatientView};
use crate::respond::with_store;
use crate::state::AppState;

/// A patient's record as one caller may see it.
pub struct OpenedRecord {
    /// The merged Patient from the fragments the caller may see (R-OBJ-2: only their own
    /// organisation's while an objection stands; then, if it holds none, the NHS number alone).
    pub patient: Value,
    /// Every record the policy lets this caller see, all types.
    pub records: Vec<Record>,
    /// Missing sources, and the notices R-OBJ-3 and R-SENS-3 require.
    pub warnings: Vec<Issue>,
    pub context: PatientContext,
}

/// The latest statement wins: by effective date, then by when it was recorded (R-OBJ-1).
pub fn objection_stands(statements: &[ObjectionStatement]) -> bool {
    statements
        .iter()
        .max_by(|a, b| {
            a.effective
                .cmp(&b.effective)
                .then_with(|| a.recorded_at.cmp(&b.recorded_at))
        })
        .is_some_and(|s| s.objects)
}

/// The policy's view of the patient, from what the sources returned.
pub fn patient_context(
    view: &PatientView,
    break_glass_users: Vec<String>,
    registered_here: &[ObjectionStatement],
) -> PatientContext {
    let (today, _) = scr_fhir::build::today_and_now();
    let today = days_of(&today).unwrap_or(0);
    let still_open = |ended: &Option<String>| {
        ended
            .as_deref()
            .and_then(days_of)
            .is_none_or(|d| d >= today)
    };
    let links = view
        .records
        .relationships
        .iter()
        .map(|r| match r {
            Relationship::Registration { org, ended, .. } => CareLink::Registration {
                org: org.clone(),
                current: still_open(ended),
            },
            Relationship::Visit { org, ended, .. } => CareLink::Visit {
                org: org.clone(),
                ended_day: ended.as_deref().and_then(days_of),
            },
            Relationship::Allocation {
                worker_user_id,
                team_member_user_ids,
                ended,
                ..
            } => CareLink::Allocation {
                worker: worker_user_id.clone(),
                team_members: team_member_user_ids.clone(),
                open: still_open(ended),
            },
        })
        .collect();
    let mut statements = view.records.objections.clone();
    statements.extend(registered_here.iter().cloned());
    PatientContext {
        links,
        objection_stands: objection_stands(&statements),
        break_glass_users,
        today,
    }
}

fn labels(record: &Record) -> RecordLabels<'_> {
    RecordLabels {
        source_org: &record.labels.source_org,
        sensitive: record.labels.sensitive,
        confidential: record.labels.confidential,
        hidden_from_patient: record.labels.hidden_from_patient,
    }
}

/// What the sources hold, the patient's context, and the break-glass claims in force.
pub type Known = (
    PatientView,
    PatientContext,
    Vec<scr_store::audit::BreakGlassClaim>,
);

/// Everything the policy needs about a patient some source knows: what the sources hold, the
/// patient's context, and the self-claimed relationships in force. 404 when no source knows
/// the NHS number.
pub async fn known_patient(state: &AppState, nhs: &str) -> Result<Known, ApiError> {
    known(state, nhs, Wanted::Everything).await
}

async fn known(state: &AppState, nhs: &str, wanted: Wanted) -> Result<Known, ApiError> {
    let view = view(state, nhs, wanted).await?;
    if view.records.fragments.is_empty() && view.records.records.is_empty() {
        return Err(ApiError::not_found("Patient", nhs));
    }
    let (claims, consents) = facade_state(state, nhs).await?;
    let context = patient_context(
        &view,
        claims.iter().map(|c| c.user_id.clone()).collect(),
        &consents,
    );
    Ok((view, context, claims))
}

/// Opens `nhs`'s record for `access`: 404 when no source knows the NHS number, 403 when the
/// policy refuses the caller this patient (R-LR-5, or another patient's record).
pub async fn open(
    state: &AppState,
    access: &Access,
    nhs: &str,
    interaction: Interaction,
) -> Result<OpenedRecord, ApiError> {
    open_fetching(state, access, nhs, interaction, Wanted::Everything).await
}

/// [`open`], fetching only what `wanted` names: a Patient read or search needs the context
/// alone (`Wanted::Context`), a search of one type only that type's records. The decision, the
/// demographics and the notices are the same as [`open`]'s for what is fetched.
pub async fn open_fetching(
    state: &AppState,
    access: &Access,
    nhs: &str,
    interaction: Interaction,
    wanted: Wanted,
) -> Result<OpenedRecord, ApiError> {
    let (view, context, claims) = known(state, nhs, wanted).await?;
    let decision = scr_policy::authorise_patient(&access.subject, nhs, &context, &state.policy);
    access.touch(nhs, &decision);
    if decision.allowed && decision.rule == "R-LR-4" {
        if let Some(claim) = claims.iter().find(|c| c.user_id == access.caller.subject) {
            access.set_break_glass_purpose(&claim.purpose);
        }
    }
    if !decision.allowed {
        return Err(ApiError::forbidden(&decision));
    }
    let PatientView {
        records: all,
        mut warnings,
        ..
    } = view;

    let fragments: Vec<PatientFragment> = all
        .fragments
        .into_iter()
        .filter(|f| scr_policy::objection_allows(&access.subject, &context, &f.source_org))
        .collect();
    let patient = merge_patient(nhs, &fragments).unwrap_or_else(|| minimal_patient(nhs));

    let mut confidential_withheld = false;
    let mut records = Vec::new();
    for record in all.records {
        match scr_policy::record_visibility(&access.subject, &labels(&record), &context) {
            Visibility::Show if access.within_scope_constraints(&record, interaction) => {
                records.push(record)
            }
            Visibility::Withhold { rule: "R-SENS-3" } => confidential_withheld = true,
            _ => {}
        }
    }
    if context.objection_stands {
        let diagnostics = if matches!(access.subject, scr_policy::Subject::Patient { .. }) {
            "An objection to sharing your record through the shared care record is recorded: professionals see only what their own organisation holds (R-OBJ-6)"
        } else {
            "The patient has objected to sharing: only records held by your own organisation are shown, so this record is not complete (R-OBJ-3)"
        };
        warnings.push(Issue::new(Severity::Warning, "suppressed", diagnostics));
    }
    if confidential_withheld {
        // R-SENS-4: a generic notice for GP-confidential entries, as GP Connect gives; nothing
        // at all for sensitive records (R-SENS-1/2).
        warnings.push(Issue::new(
            Severity::Warning,
            "suppressed",
            "Some items are withheld from this record",
        ));
    }
    Ok(OpenedRecord {
        patient,
        records,
        warnings,
        context,
    })
}

/// What the facade's own store adds to the patient's context: self-claimed relationships still
/// in force (R-LR-4) and objections registered here as Consent (R-OBJ-1).
pub async fn facade_state(
    state: &AppState,
    nhs: &str,
) -> Result<
    (
        Vec<scr_store::audit::BreakGlassClaim>,
        Vec<ObjectionStatement>,
    ),
    ApiError,
> {
    let nhs = nhs.to_owned();
    let (_, now) = scr_fhir::build::today_and_now();
    with_store(state, move |conn| {
        let claims = scr_store::audit::active_break_glass(conn, &nhs, &now)?;
        let consents = scr_store::consent::consents_for(conn, &nhs)?
            .into_iter()
            .map(|c| ObjectionStatement {
                objects: c.objects == 1,
                effective: c.effective,
                recorded_at: c.recorded_at,
                org: c.org,
            })
            .collect();
        Ok::<_, scr_store::StoreError>((claims, consents))
    })
    .await
}

/// The Patient when none of its demographics may be shown: the NHS number the caller already has.
fn minimal_patient(nhs: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "id": nhs,
        "meta": { "profile": [scr_fhir::systems::uk_core_profile("Patient")] },
        "identifier": [scr_fhir::build::nhs_number_identifier(nhs)],
    })
}
