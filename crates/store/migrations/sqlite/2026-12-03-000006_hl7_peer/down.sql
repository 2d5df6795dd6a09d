DROP INDEX hl7_message_peer_quarantine;
ALTER TABLE hl7_message DROP COLUMN peer;
