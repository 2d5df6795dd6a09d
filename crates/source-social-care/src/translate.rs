//! Social care rows to FHIR R4 JSON: a lower-priority Patient and the council's alerts as Flags.

use serde_json::{json, Value};

use scr_fhir::alerts::AlertCategory;
use scr_fhir::build::{self, source_meta};
use scr_fhir::systems;

use crate::rows::*;

/// Extension saying an alert concerns someone in the person's household, not the person
/// (defined in `fhir-profiles/StructureDefinition-alert-household.json`).
pub const HOUSEHOLD_EXT: &str = "https://scr.example.nhs.uk/StructureDefinition/alert-household";

pub struct Context<'a> {
    pub source_name: &'a str,
    /// The council's ODS-style code from configuration (the replica does not store it).
    pub council: &'a str,
    pub council_name: &'a str,
    pub nhs_number: &'a str,
    pub today: &'a str,
}

fn gender(g: &str) -> &'static str {
    match g {
        "Male" => "male",
        "Female" => "female",
        "Other" => "other",
        _ => "unknown",
    }
}

pub fn patient(ctx: &Context, row: &PersonRow) -> Value {
    let mut p = json!({
        "resourceType": "Patient",
        "meta": source_meta("Patient", ctx.source_name, ctx.council, Some(&row.last_updated)),
        "identifier": [build::nhs_number_identifier(ctx.nhs_number), build::local_identifier(ctx.source_name, &row.person_id)],
        "name": [{ "use": "official", "family": row.surname, "given": [row.forename] }],
        "gender": gender(&row.gender),
        "birthDate": row.date_of_birth,
        "address": [{ "use": "home", "postalCode": row.postcode }],
    });
    build::prune(&mut p);
    p
}

pub fn category(native: &str) -> AlertCategory {
    match native {
        // `risk-to-staff` is what the seeds mean by a household safeguarding alert too.
        "safeguarding" | "risk-to-staff" => AlertCategory::Safeguarding,
        "communication" => AlertCategory::CommunicationSupport,
        "end-of-life" => AlertCategory::EndOfLifeWishes,
        _ => AlertCategory::Other,
    }
}

pub fn alert(ctx: &Context, row: &AlertRow) -> Value {
    let key = format!("alert-{}", row.alert_id);
    let active = row.end_date.as_deref().is_none_or(|end| end >= ctx.today);
    let household = row.household == 1;
    let text = match (&row.detail, household) {
        (Some(d), true) if !d.is_empty() => {
            format!("{} (concerns a member of the household): {d}", row.title)
        }
        (_, true) => format!("{} (concerns a member of the household)", row.title),
        (Some(d), false) if !d.is_empty() => format!("{}: {d}", row.title),
        _ => row.title.clone(),
    };
    let mut period = json!({ "start": row.start_date });
    if let Some(end) = &row.end_date {
        period["end"] = end.clone().into();
    }
    let mut f = json!({
        "resourceType": "Flag",
        "id": scr_source::make_id(ctx.source_name, &key),
        "meta": source_meta("Flag", ctx.source_name, ctx.council, Some(&row.last_updated)),
        "identifier": [build::local_identifier(ctx.source_name, &key)],
        "status": if active { "active" } else { "inactive" },
        "category": category(&row.category).concept(),
        "code": { "coding": [build::coding(&format!("{}/{}", systems::LOCAL_ID_BASE, "social-care-alert-category"), &row.category, None)], "text": text },
        "subject": build::patient_reference(ctx.nhs_number),
        "period": period,
        "author": build::organisation_reference(ctx.council, Some(ctx.council_name)),
    });
    if household {
        f["extension"] = json!([{ "url": HOUSEHOLD_EXT, "valueBoolean": true }]);
    }
    f
}
