-- Objections and consents registered in the shared care record itself as FHIR Consent (R-OBJ-1,
-- R-OBJ-5). Never updated: a withdrawal is a newer statement; the latest statement wins.
CREATE TABLE consent_statement (
    id BIGSERIAL PRIMARY KEY,
    nhs_number TEXT NOT NULL,
    objects INTEGER NOT NULL,        -- 1: provision deny (objection); 0: permit (consent)
    effective TEXT NOT NULL,         -- Consent.dateTime
    recorded_at TEXT NOT NULL,
    org TEXT NOT NULL,
    user_id TEXT NOT NULL,
    resource TEXT NOT NULL
);
CREATE INDEX consent_statement_patient ON consent_statement (nhs_number);
