-- The state of SMART sign-ins, held in the store so that a restart or a second instance never
-- loses or revives it (docs/smart-apps.md): sign-ins on their way to the login provider
-- (`login`), signed-in users awaiting a role or patient choice (`choice`), authorization codes
-- (`code`), EHR launches (`launch`), confirmed roles (`role`) and revoked refresh token
-- families (`revoked`). `id` is the SHA-256 of the random value the user agent or app holds,
-- never the value itself. `client` is the address that started a sign-in, for the per-address
-- cap. Rows past `expires_at` are never used and are deleted as new ones are written.
CREATE TABLE sign_in_state (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    client TEXT NOT NULL,
    body TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE INDEX sign_in_state_by_client ON sign_in_state (kind, client, expires_at);
CREATE INDEX sign_in_state_by_expiry ON sign_in_state (expires_at);
