//! GP replica rows to FHIR R4 (UK Core) JSON. The only place that knows what a GP column means.

use serde_json::{json, Value};

use scr_fhir::alerts::{AlertCategory, AlertCodes};
use scr_fhir::build::{self, coding, concept, decimal_from_f32, quantity, source_meta};
use scr_fhir::systems;

use crate::rows::*;

/// What every translation of one patient's rows needs to know.
pub struct Context<'a> {
    pub source_name: &'a str,
    pub nhs_number: &'a str,
    /// `YYYY-MM-DD`: an alert ending today or later is still active.
    pub today: &'a str,
    /// Alert categories by SNOMED CT code.
    pub alert_codes: &'a AlertCodes,
}

/// The organisation a row was recorded by.
pub struct Org<'a> {
    pub ods: &'a str,
    pub name: &'a str,
}

fn id(ctx: &Context, key: &str) -> String {
    scr_source::make_id(ctx.source_name, key)
}

fn base(ctx: &Context, resource_type: &str, key: &str, org: &Org, last_updated: &str) -> Value {
    json!({
        "resourceType": resource_type,
        "id": id(ctx, key),
        "meta": source_meta(resource_type, ctx.source_name, org.ods, Some(last_updated)),
        "identifier": [build::local_identifier(ctx.source_name, key)],
    })
}

fn gender(sex: &str) -> &'static str {
    match sex {
        "M" => "male",
        "F" => "female",
        "I" => "other",
        _ => "unknown",
    }
}

/// Display names for the languages the region most often needs interpreters for.
pub fn language_name(code: &str) -> &str {
    match code {
        "pa" => "Punjabi",
        "ur" => "Urdu",
        "pl" => "Polish",
        "ro" => "Romanian",
        "bn" => "Bengali",
        "gu" => "Gujarati",
        "ar" => "Arabic",
        "so" => "Somali",
        "ku" => "Kurdish",
        "ti" => "Tigrinya",
        "zh" => "Chinese",
        "en" => "English",
        "sgn-GB" | "bfi" => "British Sign Language",
        other => other,
    }
}

/// The patient as this registration describes them. `generalPractitioner` only while registered.
pub fn patient(ctx: &Context, row: &PatientRow, org: &Org) -> Value {
    let mut given = vec![row.given_name.clone()];
    given.extend(
        row.middle_names
            .iter()
            .flat_map(|m| m.split_whitespace().map(str::to_owned)),
    );
    let lines: Vec<&String> = [&row.address_line_1, &row.address_line_2]
        .into_iter()
        .flatten()
        .collect();
    let mut p = json!({
        "resourceType": "Patient",
        "meta": source_meta("Patient", ctx.source_name, org.ods, Some(&row.last_updated)),
        "identifier": [build::nhs_number_identifier(ctx.nhs_number), build::local_identifier(ctx.source_name, &row.patient_guid)],
        "name": [{ "use": "official", "family": row.family_name, "given": given, "prefix": row.title.iter().collect::<Vec<_>>() }],
        "gender": gender(&row.sex),
        "birthDate": row.date_of_birth,
        "address": [{ "use": "home", "line": lines, "city": row.town, "postalCode": row.postcode }],
        "telecom": [
            row.telephone.as_ref().map(|t| json!({"system": "phone", "value": t, "use": "home"})),
            row.mobile.as_ref().map(|t| json!({"system": "phone", "value": t, "use": "mobile"})),
            row.email.as_ref().map(|t| json!({"system": "email", "value": t, "use": "home"})),
        ],
    });
    if let Some(death) = row.date_of_death.as_deref().and_then(build::date_time) {
        p["deceasedDateTime"] = death.into();
    }
    if row.registration_end.is_none() {
        p["generalPractitioner"] = json!([build::organisation_reference(org.ods, Some(org.name))]);
    }
    if let Some(lang) = row.main_language.as_deref().filter(|l| !l.is_empty()) {
        p["communication"] = json!([{
            "language": { "coding": [coding(systems::LANGUAGE, lang, Some(language_name(lang)))], "text": language_name(lang) },
            "preferred": true,
        }]);
        if row.interpreter_required == 1 {
            p["extension"] =
                json!([{ "url": systems::INTERPRETER_REQUIRED_EXT, "valueBoolean": true }]);
        }
    }
    build::prune(&mut p);
    p
}

/// An interpreter need, presented as an active communication-support Flag so that it shows the
/// moment the record opens.
pub fn interpreter_flag(ctx: &Context, row: &PatientRow, org: &Org) -> Option<Value> {
    let lang = row
        .main_language
        .as_deref()
        .filter(|l| !l.is_empty() && row.interpreter_required == 1)?;
    let name = language_name(lang);
    let key = format!("interp-{}", row.patient_guid);
    let mut f = base(ctx, "Flag", &key, org, &row.last_updated);
    f["status"] = "active".into();
    f["category"] = AlertCategory::CommunicationSupport.concept();
    f["code"] = json!({ "coding": [coding(systems::LANGUAGE, lang, Some(name))], "text": format!("Interpreter required: {name}") });
    f["subject"] = build::patient_reference(ctx.nhs_number);
    f["period"] = json!({ "start": row.registration_start });
    f["author"] = build::organisation_reference(org.ods, Some(org.name));
    Some(f)
}

fn vital_sign(snomed: &str) -> bool {
    // Blood pressure, pulse, temperature, respiratory rate, oxygen saturation, weight, height, BMI.
    matches!(
        snomed,
        "271649006"
            | "271650006"
            | "75367002"
            | "364075005"
            | "78564009"
            | "386725007"
            | "86290005"
            | "431314004"
            | "103228002"
            | "27113001"
            | "50373000"
            | "60621009"
            | "248326004"
    )
}

pub fn observation(ctx: &Context, row: &ObservationRow, org: &Org) -> Value {
    let mut o = base(
        ctx,
        "Observation",
        &row.observation_guid,
        org,
        &row.recorded_at,
    );
    o["status"] = "final".into();
    if row.value_numeric.is_some() {
        let cat = if vital_sign(&row.snomed_concept_id) {
            ("vital-signs", "Vital Signs")
        } else {
            ("laboratory", "Laboratory")
        };
        o["category"] =
            json!([{ "coding": [coding(systems::OBSERVATION_CATEGORY, cat.0, Some(cat.1))] }]);
    }
    o["code"] = concept(systems::SNOMED, &row.snomed_concept_id, &row.term);
    o["subject"] = build::patient_reference(ctx.nhs_number);
    if let Some(d) = build::date_time(&row.effective_date) {
        o["effectiveDateTime"] = d.into();
    }
    if let Some(i) = build::instant(&row.recorded_at) {
        o["issued"] = i.into();
    }
    o["performer"] = json!([build::organisation_reference(org.ods, Some(org.name))]);
    let unit = row.value_unit.as_deref();
    if let Some(v) = row.value_numeric {
        o["valueQuantity"] = quantity(decimal_from_f32(v), unit);
    } else if let Some(t) = row.value_text.as_deref().filter(|t| !t.is_empty()) {
        o["valueString"] = t.into();
    }
    if row.reference_low.is_some() || row.reference_high.is_some() {
        let mut range = json!({});
        if let Some(l) = row.reference_low {
            range["low"] = quantity(decimal_from_f32(l), unit);
        }
        if let Some(h) = row.reference_high {
            range["high"] = quantity(decimal_from_f32(h), unit);
        }
        o["referenceRange"] = json!([range]);
    }
    o
}

pub fn allergy(ctx: &Context, row: &AllergyRow, org: &Org) -> Value {
    let mut a = base(
        ctx,
        "AllergyIntolerance",
        &row.allergy_guid,
        org,
        &row.recorded_at,
    );
    let clinical = match row.status.as_str() {
        "inactive" => "inactive",
        "resolved" => "resolved",
        _ => "active",
    };
    a["clinicalStatus"] = json!({ "coding": [coding(systems::ALLERGY_CLINICAL, clinical, None)] });
    a["verificationStatus"] =
        json!({ "coding": [coding(systems::ALLERGY_VERIFICATION, "confirmed", None)] });
    a["type"] = "allergy".into();
    if matches!(
        row.category.as_str(),
        "food" | "medication" | "environment" | "biologic"
    ) {
        a["category"] = json!([row.category]);
    }
    if row.severity.as_deref() == Some("severe") {
        a["criticality"] = "high".into();
    }
    a["code"] = concept(systems::SNOMED, &row.snomed_concept_id, &row.term);
    a["patient"] = build::patient_reference(ctx.nhs_number);
    if let Some(onset) = row.onset_date.as_deref().and_then(build::date_time) {
        a["onsetDateTime"] = onset.into();
    }
    if let Some(d) = build::date_time(&row.recorded_at) {
        a["recordedDate"] = d.into();
    }
    if row.reaction_term.is_some() || row.substance_term.is_some() {
        let manifestation = match (&row.reaction_snomed_id, &row.reaction_term) {
            (Some(code), Some(term)) => concept(systems::SNOMED, code, term),
            (None, Some(term)) => build::text_concept(term),
            _ => build::text_concept("Reaction not recorded"),
        };
        let mut reaction = json!({ "manifestation": [manifestation] });
        if let (Some(code), Some(term)) = (&row.substance_snomed_id, &row.substance_term) {
            reaction["substance"] = concept(systems::SNOMED, code, term);
        }
        if let Some(sev) = row
            .severity
            .as_deref()
            .filter(|s| matches!(*s, "mild" | "moderate" | "severe"))
        {
            reaction["severity"] = sev.into();
        }
        a["reaction"] = json!([reaction]);
    }
    a
}

pub fn medication(ctx: &Context, row: &MedicationRow, org: &Org) -> Value {
    let mut m = base(
        ctx,
        "MedicationStatement",
        &row.medication_guid,
        org,
        &row.recorded_at,
    );
    m["status"] = match row.status.as_str() {
        "active" => "active",
        "completed" => "completed",
        "cancelled" => "stopped",
        _ => "unknown",
    }
    .into();
    let course = match row.course_type.as_str() {
        "repeat" => "Repeat",
        "repeat-dispensing" => "Repeat dispensing",
        _ => "Acute",
    };
    m["category"] = json!({
        "coding": [coding(systems::MEDICATION_STATEMENT_CATEGORY, "community", Some("Community"))],
        "text": format!("{course} prescription (community)"),
    });
    m["medicationCodeableConcept"] = concept(systems::DMD, &row.dmd_code, &row.drug_name);
    m["subject"] = build::patient_reference(ctx.nhs_number);
    let mut period = json!({ "start": row.start_date });
    if let Some(end) = &row.end_date {
        period["end"] = end.clone().into();
    }
    m["effectivePeriod"] = period;
    if let Some(d) = build::date_time(&row.recorded_at) {
        m["dateAsserted"] = d.into();
    }
    m["informationSource"] = build::organisation_reference(org.ods, Some(org.name));
    let mut dosage = json!({});
    if let Some(text) = &row.dosage_text {
        dosage["text"] = text.clone().into();
    }
    if let Some(q) = row.quantity_value {
        // The replica's quantity is the quantity supplied per issue, not a dose: keep it as text.
        let supplied = format!(
            "Quantity per issue: {} {}",
            decimal_from_f32(q),
            row.quantity_unit.as_deref().unwrap_or("")
        );
        dosage["patientInstruction"] = supplied.trim().to_owned().into();
    }
    if dosage.as_object().is_some_and(|d| !d.is_empty()) {
        m["dosage"] = json!([dosage]);
    }
    if let Some(last) = &row.last_issue_date {
        m["note"] = json!([{ "text": format!("Last issued {last}") }]);
    }
    m
}

/// A practice alert as a Flag; active while `end_date` is empty or not yet past.
pub fn alert(ctx: &Context, row: &AlertRow, org: &Org) -> Value {
    let mut f = base(
        ctx,
        "Flag",
        &format!("alert-{}", row.alert_guid),
        org,
        &row.recorded_at,
    );
    let active = row.end_date.as_deref().is_none_or(|end| end >= ctx.today);
    f["status"] = if active { "active" } else { "inactive" }.into();
    let text = match &row.alert_text {
        Some(t) if !t.is_empty() => format!("{}: {t}", row.term),
        _ => row.term.clone(),
    };
    // By code first: "No known allergies" coded 716186003 is not a severe allergy, whatever a
    // keyword in its text suggests. The text decides only for a code no alert ValueSet lists.
    f["category"] = ctx
        .alert_codes
        .classify(row.snomed_concept_id.as_deref(), &text)
        .concept();
    f["code"] = match &row.snomed_concept_id {
        Some(code) => {
            json!({ "coding": [coding(systems::SNOMED, code, Some(&row.term))], "text": text })
        }
        None => json!({ "text": text }),
    };
    f["subject"] = build::patient_reference(ctx.nhs_number);
    let mut period = json!({ "start": row.start_date });
    if let Some(end) = &row.end_date {
        period["end"] = end.clone().into();
    }
    f["period"] = period;
    f["author"] = build::organisation_reference(org.ods, Some(org.name));
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(code: Option<&str>, term: &str) -> AlertRow {
        AlertRow {
            alert_guid: "a1".into(),
            patient_guid: "p1".into(),
            org_guid: "o1".into(),
            snomed_concept_id: code.map(str::to_owned),
            term: term.into(),
            alert_text: None,
            start_date: "2026-01-01".into(),
            end_date: None,
            recorded_at: "2026-01-01T10:00:00Z".into(),
        }
    }

    fn category(codes: &AlertCodes, code: Option<&str>, term: &str) -> Value {
        let ctx = Context {
            source_name: "gp",
            nhs_number: "9990000018",
            today: "2026-11-25",
            alert_codes: codes,
        };
        let org = Org {
            ods: "M85001",
            name: "High Street Surgery",
        };
        alert(&ctx, &row(code, term), &org)["category"][0]["coding"][0]["code"].clone()
    }

    #[test]
    fn item10_gp_alert_category_comes_from_its_snomed_code(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let codes = AlertCodes::shipped()?;
        // Coded "no known allergy": other, never severe allergy, and never first.
        assert_eq!(
            category(&codes, Some("716186003"), "No known allergies"),
            "other"
        );
        assert_eq!(
            category(
                &codes,
                Some("342191000000101"),
                "Subject to child protection plan"
            ),
            "safeguarding"
        );
        assert_eq!(
            category(&codes, Some("91935009"), "Peanut allergy"),
            "severe-allergy-condition"
        );
        // No code, or a code no ValueSet lists: the text, with its negations understood.
        assert_eq!(category(&codes, None, "No known allergies"), "other");
        assert_eq!(
            category(
                &codes,
                Some("999999999"),
                "Hearing impaired - use written communication"
            ),
            "communication-support"
        );
        Ok(())
    }
}
