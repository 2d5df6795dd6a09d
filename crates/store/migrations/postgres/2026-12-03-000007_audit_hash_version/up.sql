-- Which link hash a row of the audit trail carries (docs/audit.md). Rows written before this
-- migration keep version 1 (previous hash, seq and JSON only); every row appended from now on is
-- version 2, which covers every stored column. A version 1 row after a version 2 row is a
-- downgrade and breaks the chain.
ALTER TABLE audit_event ADD COLUMN hash_version INTEGER NOT NULL DEFAULT 1;
