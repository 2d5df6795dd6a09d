ALTER TABLE audit_event DROP COLUMN hash_version;
