-- Who sent each message over MLLP: the verified client certificate's name, or the peer
-- address (NULL for files loaded by an operator). The quarantine is capped per peer.
ALTER TABLE hl7_message ADD COLUMN peer TEXT;
CREATE INDEX hl7_message_peer_quarantine ON hl7_message (peer, resolved_at, ack_code);
