-- The HL7 v2 feed: every received message, and the records derived from applied ones.
-- Ids are never reused (AUTOINCREMENT): they appear in FHIR ids.

CREATE TABLE hl7_message (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    facility TEXT NOT NULL,
    control_id TEXT NOT NULL,
    message_type TEXT NOT NULL,
    message_time TEXT,
    received_at TEXT NOT NULL,
    ack_code TEXT NOT NULL CHECK (ack_code IN ('AA', 'AE', 'AR')),
    applied INTEGER NOT NULL CHECK (applied IN (0, 1)),
    error_kind TEXT,
    reason TEXT,
    raw TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 1,
    last_attempt_at TEXT,
    resolved_at TEXT
);
-- A message is applied once per sending facility and control id; resends are logged unapplied.
CREATE UNIQUE INDEX hl7_message_applied_key ON hl7_message (facility, control_id) WHERE applied = 1;
CREATE INDEX hl7_message_quarantine ON hl7_message (id) WHERE ack_code <> 'AA' AND resolved_at IS NULL;
CREATE INDEX hl7_message_key ON hl7_message (facility, control_id);

CREATE TABLE hl7_patient (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    facility TEXT NOT NULL,
    nhs_number TEXT NOT NULL,
    local_id TEXT,
    family_upper TEXT,
    birth_date TEXT,
    from_adt INTEGER NOT NULL,
    resource TEXT NOT NULL,
    source_time TEXT NOT NULL,
    message_id BIGINT NOT NULL,
    last_updated TEXT NOT NULL,
    UNIQUE (facility, nhs_number)
);
CREATE INDEX hl7_patient_nhs ON hl7_patient (nhs_number);
CREATE INDEX hl7_patient_family ON hl7_patient (family_upper, birth_date);

CREATE TABLE hl7_visit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    facility TEXT NOT NULL,
    visit_number TEXT NOT NULL,
    nhs_number TEXT NOT NULL,
    patient_class TEXT,
    location TEXT,
    service_code TEXT,
    admit_time TEXT NOT NULL,
    discharge_time TEXT,
    sensitive INTEGER NOT NULL,
    source_time TEXT NOT NULL,
    message_id BIGINT NOT NULL,
    last_updated TEXT NOT NULL,
    UNIQUE (facility, visit_number)
);
CREATE INDEX hl7_visit_nhs ON hl7_visit (nhs_number);

CREATE TABLE hl7_allergy (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    facility TEXT NOT NULL,
    nhs_number TEXT NOT NULL,
    allergen_key TEXT NOT NULL,
    sensitive INTEGER NOT NULL,
    resource TEXT NOT NULL,
    source_time TEXT NOT NULL,
    message_id BIGINT NOT NULL,
    last_updated TEXT NOT NULL,
    UNIQUE (facility, nhs_number, allergen_key)
);
CREATE INDEX hl7_allergy_nhs ON hl7_allergy (nhs_number);

CREATE TABLE hl7_observation (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    facility TEXT NOT NULL,
    nhs_number TEXT NOT NULL,
    filler_order TEXT NOT NULL,
    code TEXT NOT NULL,
    sub_id TEXT NOT NULL,
    status TEXT NOT NULL,
    cancelled INTEGER NOT NULL,
    sensitive INTEGER NOT NULL,
    resource TEXT NOT NULL,
    source_time TEXT NOT NULL,
    message_id BIGINT NOT NULL,
    last_updated TEXT NOT NULL,
    UNIQUE (facility, filler_order, code, sub_id)
);
CREATE INDEX hl7_observation_nhs ON hl7_observation (nhs_number);

CREATE TABLE hl7_medication (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    facility TEXT NOT NULL,
    nhs_number TEXT NOT NULL,
    placer_order TEXT NOT NULL,
    status TEXT NOT NULL,
    cancelled INTEGER NOT NULL,
    sensitive INTEGER NOT NULL,
    resource TEXT NOT NULL,
    source_time TEXT NOT NULL,
    message_id BIGINT NOT NULL,
    last_updated TEXT NOT NULL,
    UNIQUE (facility, placer_order)
);
CREATE INDEX hl7_medication_nhs ON hl7_medication (nhs_number);
