-- Client assertion ids seen by the token endpoint: a reused jti is refused (SMART Backend
-- Services). Rows past their expiry can be deleted; the assertion would be refused anyway.
CREATE TABLE client_assertion_jti (
    client_id TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (client_id, jti)
);
