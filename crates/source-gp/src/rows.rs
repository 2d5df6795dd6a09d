//! Rows of the GP replica as the facade reads them.

use diesel::prelude::*;

use crate::schema::*;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = organisation)]
pub struct OrganisationRow {
    pub org_guid: String,
    pub ods_code: String,
    pub name: String,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = patient)]
pub struct PatientRow {
    pub patient_guid: String,
    pub nhs_number: Option<String>,
    pub title: Option<String>,
    pub given_name: String,
    pub middle_names: Option<String>,
    pub family_name: String,
    pub date_of_birth: String,
    pub sex: String,
    pub date_of_death: Option<String>,
    pub address_line_1: Option<String>,
    pub address_line_2: Option<String>,
    pub town: Option<String>,
    pub postcode: Option<String>,
    pub telephone: Option<String>,
    pub mobile: Option<String>,
    pub email: Option<String>,
    pub main_language: Option<String>,
    pub interpreter_required: i32,
    pub registered_org_guid: String,
    pub registration_start: String,
    pub registration_end: Option<String>,
    pub usual_gp_name: Option<String>,
    pub last_updated: String,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = observation)]
pub struct ObservationRow {
    pub observation_guid: String,
    pub patient_guid: String,
    pub org_guid: String,
    pub snomed_concept_id: String,
    pub term: String,
    pub effective_date: String,
    pub value_numeric: Option<f32>,
    pub value_unit: Option<String>,
    pub value_text: Option<String>,
    pub reference_low: Option<f32>,
    pub reference_high: Option<f32>,
    pub is_confidential: i32,
    pub entered_in_error: i32,
    pub recorded_by: Option<String>,
    pub recorded_at: String,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = allergy)]
pub struct AllergyRow {
    pub allergy_guid: String,
    pub patient_guid: String,
    pub org_guid: String,
    pub snomed_concept_id: String,
    pub term: String,
    pub substance_snomed_id: Option<String>,
    pub substance_term: Option<String>,
    pub reaction_snomed_id: Option<String>,
    pub reaction_term: Option<String>,
    pub severity: Option<String>,
    pub category: String,
    pub onset_date: Option<String>,
    pub status: String,
    pub is_confidential: i32,
    pub recorded_at: String,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = medication)]
pub struct MedicationRow {
    pub medication_guid: String,
    pub patient_guid: String,
    pub org_guid: String,
    pub dmd_code: String,
    pub drug_name: String,
    pub dosage_text: Option<String>,
    pub quantity_value: Option<f32>,
    pub quantity_unit: Option<String>,
    pub course_type: String,
    pub start_date: String,
    pub end_date: Option<String>,
    pub last_issue_date: Option<String>,
    pub status: String,
    pub is_confidential: i32,
    pub recorded_at: String,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = patient_alert)]
pub struct AlertRow {
    pub alert_guid: String,
    pub patient_guid: String,
    pub org_guid: String,
    pub snomed_concept_id: Option<String>,
    pub term: String,
    pub alert_text: Option<String>,
    pub start_date: String,
    pub end_date: Option<String>,
    pub recorded_at: String,
}
