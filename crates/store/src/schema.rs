//! The store's tables, one schema for both backends. Only `Text`, `Integer`, `BigInt` and
//! `Nullable` of those are used: the connection enum supports no other types. Flags are
//! `Integer` 0/1.

diesel::table! {
    /// Every received HL7 message with its acknowledgement. `applied = 1` marks the one copy of a
    /// (facility, control id) whose effects were applied; AE/AR rows are the quarantine.
    hl7_message (id) {
        id -> BigInt,
        facility -> Text,
        control_id -> Text,
        message_type -> Text,
        message_time -> Nullable<Text>,
        received_at -> Text,
        ack_code -> Text,
        applied -> Integer,
        error_kind -> Nullable<Text>,
        reason -> Nullable<Text>,
        raw -> Text,
        attempts -> Integer,
        last_attempt_at -> Nullable<Text>,
        resolved_at -> Nullable<Text>,
        peer -> Nullable<Text>,
    }
}

diesel::table! {
    /// Demographics per sending facility and NHS number (latest message wins).
    hl7_patient (id) {
        id -> BigInt,
        facility -> Text,
        nhs_number -> Text,
        local_id -> Nullable<Text>,
        family_upper -> Nullable<Text>,
        birth_date -> Nullable<Text>,
        from_adt -> Integer,
        resource -> Text,
        source_time -> Text,
        message_id -> BigInt,
        last_updated -> Text,
    }
}

diesel::table! {
    /// Hospital visits per sending facility and visit number (PV1-19).
    hl7_visit (id) {
        id -> BigInt,
        facility -> Text,
        visit_number -> Text,
        nhs_number -> Text,
        patient_class -> Nullable<Text>,
        location -> Nullable<Text>,
        service_code -> Nullable<Text>,
        admit_time -> Text,
        discharge_time -> Nullable<Text>,
        sensitive -> Integer,
        source_time -> Text,
        message_id -> BigInt,
        last_updated -> Text,
    }
}

diesel::table! {
    /// Allergies (AL1) per sending facility, patient and allergen.
    hl7_allergy (id) {
        id -> BigInt,
        facility -> Text,
        nhs_number -> Text,
        allergen_key -> Text,
        sensitive -> Integer,
        resource -> Text,
        source_time -> Text,
        message_id -> BigInt,
        last_updated -> Text,
    }
}

diesel::table! {
    /// Results: one row per OBR-3 + OBX-3 + OBX-4 per sending facility.
    hl7_observation (id) {
        id -> BigInt,
        facility -> Text,
        nhs_number -> Text,
        filler_order -> Text,
        code -> Text,
        sub_id -> Text,
        status -> Text,
        cancelled -> Integer,
        sensitive -> Integer,
        resource -> Text,
        source_time -> Text,
        message_id -> BigInt,
        last_updated -> Text,
    }
}

diesel::table! {
    /// Medication orders per sending facility and placer order number (ORC-2).
    hl7_medication (id) {
        id -> BigInt,
        facility -> Text,
        nhs_number -> Text,
        placer_order -> Text,
        status -> Text,
        cancelled -> Integer,
        sensitive -> Integer,
        resource -> Text,
        source_time -> Text,
        message_id -> BigInt,
        last_updated -> Text,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    hl7_message,
    hl7_patient,
    hl7_visit,
    hl7_allergy,
    hl7_observation,
    hl7_medication
);

diesel::table! {
    /// The hash-chained audit trail (R-AUD-3).
    audit_event (seq) {
        seq -> BigInt,
        recorded -> Text,
        patient_nhs -> Nullable<Text>,
        agent_user -> Text,
        agent_org -> Nullable<Text>,
        outcome -> Text,
        rule -> Nullable<Text>,
        break_glass -> Integer,
        resource -> Text,
        prev_hash -> Text,
        hash -> Text,
        /// 1: `hash` covers the previous hash, `seq` and `resource` only (rows written before
        /// migration 000007); 2: every stored column (docs/audit.md).
        hash_version -> Integer,
    }
}

diesel::table! {
    /// Self-claimed relationships (R-LR-4).
    break_glass_claim (id) {
        id -> BigInt,
        user_id -> Text,
        org -> Text,
        nhs_number -> Text,
        purpose -> Text,
        reason -> Text,
        claimed_at -> Text,
        expires_at -> Text,
        reviewed_at -> Nullable<Text>,
    }
}

diesel::table! {
    /// Objections and consents registered as FHIR Consent (R-OBJ-1, R-OBJ-5).
    consent_statement (id) {
        id -> BigInt,
        nhs_number -> Text,
        objects -> Integer,
        effective -> Text,
        recorded_at -> Text,
        org -> Text,
        user_id -> Text,
        resource -> Text,
    }
}

diesel::table! {
    /// Client assertion ids already used at the token endpoint.
    client_assertion_jti (client_id, jti) {
        client_id -> Text,
        jti -> Text,
        expires_at -> BigInt,
    }
}

diesel::table! {
    /// The state of SMART sign-ins (codes, launches, revoked families, ...), by kind.
    sign_in_state (kind, id) {
        kind -> Text,
        id -> Text,
        client -> Text,
        body -> Text,
        expires_at -> BigInt,
    }
}

diesel::table! {
    /// Alerts written through the facade (R-WRITE).
    flag (id) {
        id -> BigInt,
        nhs_number -> Text,
        author_kind -> Text,
        author_org -> Text,
    }
}

diesel::table! {
    /// Every version of every facade alert.
    flag_version (flag_id, version) {
        flag_id -> BigInt,
        version -> Integer,
        author_user -> Text,
        author_org -> Text,
        recorded_at -> Text,
        resource -> Text,
    }
}

diesel::allow_tables_to_appear_in_same_query!(flag, flag_version);
