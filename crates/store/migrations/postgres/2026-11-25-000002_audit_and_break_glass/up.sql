-- The audit trail (R-AUD): append-only, each row chained to the one before by a SHA-256 hash.
CREATE TABLE audit_event (
    seq BIGINT PRIMARY KEY,          -- 1, 2, 3 ... assigned under a lock: no gaps, no forks
    recorded TEXT NOT NULL,
    patient_nhs TEXT,
    agent_user TEXT NOT NULL,
    agent_org TEXT,
    outcome TEXT NOT NULL,           -- FHIR AuditEvent.outcome: 0 success, 4 minor failure (refusal), 8 serious failure
    rule TEXT,                       -- the access rule that decided, e.g. R-LR-5
    break_glass INTEGER NOT NULL,    -- 1: access under a self-claimed relationship (R-LR-4)
    resource TEXT NOT NULL,          -- the AuditEvent JSON, exactly as hashed
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_event_patient ON audit_event (patient_nhs);
CREATE INDEX audit_event_agent ON audit_event (agent_user);

-- Self-claimed relationships (R-LR-4): time-limited, reviewed by privacy officers.
CREATE TABLE break_glass_claim (
    id BIGSERIAL PRIMARY KEY,
    user_id TEXT NOT NULL,
    org TEXT NOT NULL,
    nhs_number TEXT NOT NULL,
    purpose TEXT NOT NULL,           -- ETREAT or BTG
    reason TEXT NOT NULL,
    claimed_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    reviewed_at TEXT
);
CREATE INDEX break_glass_claim_patient ON break_glass_claim (nhs_number);
