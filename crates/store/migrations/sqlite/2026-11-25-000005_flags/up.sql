-- Alerts written through the facade (R-WRITE): every version kept, the current one is the
-- highest. The primary key makes two updates of the same version conflict: one wins.
CREATE TABLE flag (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    nhs_number TEXT NOT NULL,
    author_kind TEXT NOT NULL,      -- staff, patient or system: who may change it (R-WRITE-2)
    author_org TEXT NOT NULL
);
CREATE INDEX flag_patient ON flag (nhs_number);
CREATE TABLE flag_version (
    flag_id BIGINT NOT NULL REFERENCES flag (id),
    version INTEGER NOT NULL,
    author_user TEXT NOT NULL,
    author_org TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    resource TEXT NOT NULL,         -- the Flag JSON of this version, without id and meta
    PRIMARY KEY (flag_id, version)
);
