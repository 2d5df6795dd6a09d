//! The GP supplier's reporting replica, as published (`replica-schema.sql`). Read-only: the
//! facade adds no table or index to it. `REAL` columns are `Float`: PostgreSQL's `REAL` is four
//! bytes, and SQLite reads its doubles into it without loss of the digits the GP entered.

diesel::table! {
    organisation (org_guid) {
        org_guid -> Text,
        ods_code -> Text,
        name -> Text,
    }
}

diesel::table! {
    patient (patient_guid) {
        patient_guid -> Text,
        nhs_number -> Nullable<Text>,
        title -> Nullable<Text>,
        given_name -> Text,
        middle_names -> Nullable<Text>,
        family_name -> Text,
        date_of_birth -> Text,
        sex -> Text,
        date_of_death -> Nullable<Text>,
        address_line_1 -> Nullable<Text>,
        address_line_2 -> Nullable<Text>,
        town -> Nullable<Text>,
        postcode -> Nullable<Text>,
        telephone -> Nullable<Text>,
        mobile -> Nullable<Text>,
        email -> Nullable<Text>,
        main_language -> Nullable<Text>,
        interpreter_required -> Integer,
        registered_org_guid -> Text,
        registration_start -> Text,
        registration_end -> Nullable<Text>,
        usual_gp_name -> Nullable<Text>,
        last_updated -> Text,
    }
}

diesel::table! {
    observation (observation_guid) {
        observation_guid -> Text,
        patient_guid -> Text,
        org_guid -> Text,
        snomed_concept_id -> Text,
        term -> Text,
        effective_date -> Text,
        value_numeric -> Nullable<Float>,
        value_unit -> Nullable<Text>,
        value_text -> Nullable<Text>,
        reference_low -> Nullable<Float>,
        reference_high -> Nullable<Float>,
        is_confidential -> Integer,
        entered_in_error -> Integer,
        recorded_by -> Nullable<Text>,
        recorded_at -> Text,
    }
}

diesel::table! {
    allergy (allergy_guid) {
        allergy_guid -> Text,
        patient_guid -> Text,
        org_guid -> Text,
        snomed_concept_id -> Text,
        term -> Text,
        substance_snomed_id -> Nullable<Text>,
        substance_term -> Nullable<Text>,
        reaction_snomed_id -> Nullable<Text>,
        reaction_term -> Nullable<Text>,
        severity -> Nullable<Text>,
        category -> Text,
        onset_date -> Nullable<Text>,
        status -> Text,
        is_confidential -> Integer,
        recorded_at -> Text,
    }
}

diesel::table! {
    medication (medication_guid) {
        medication_guid -> Text,
        patient_guid -> Text,
        org_guid -> Text,
        dmd_code -> Text,
        drug_name -> Text,
        dosage_text -> Nullable<Text>,
        quantity_value -> Nullable<Float>,
        quantity_unit -> Nullable<Text>,
        course_type -> Text,
        start_date -> Text,
        end_date -> Nullable<Text>,
        last_issue_date -> Nullable<Text>,
        status -> Text,
        is_confidential -> Integer,
        recorded_at -> Text,
    }
}

diesel::table! {
    patient_alert (alert_guid) {
        alert_guid -> Text,
        patient_guid -> Text,
        org_guid -> Text,
        snomed_concept_id -> Nullable<Text>,
        term -> Text,
        alert_text -> Nullable<Text>,
        start_date -> Text,
        end_date -> Nullable<Text>,
        recorded_at -> Text,
    }
}
