-- mfad schema v5 (PostgreSQL): passkeys and legacy U2F keys (WebAuthn).
-- A passkey or U2F key is a `devices` row (method 'passkey' or 'u2f'; display details in
-- devices.data) plus its credential here. Deleting the device deletes the credential.

-- The WebAuthn user handle (user.id in the options): random, never the username.
CREATE TABLE webauthn_users (
    user_id     BIGINT  PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    user_handle TEXT    NOT NULL UNIQUE             -- base64url of 32 random bytes
);

CREATE TABLE webauthn_credentials (
    device_id     BIGINT  PRIMARY KEY REFERENCES devices(id) ON DELETE CASCADE,
    user_id       BIGINT  NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    credential_id TEXT    NOT NULL UNIQUE,          -- base64url; unique across all users
    public_key    TEXT    NOT NULL,                 -- base64url of the CBOR COSE key
    sign_count    BIGINT  NOT NULL DEFAULT 0,       -- the clone guard: only ever moves forward
    app_id        TEXT                              -- U2F: the AppID it was registered under
);
CREATE INDEX webauthn_credentials_user ON webauthn_credentials(user_id);

-- Registration and sign-in ceremonies: single use (deleted when consumed), expiring.
CREATE TABLE webauthn_ceremonies (
    id_hash    TEXT    PRIMARY KEY,                 -- SHA-256 of the registration/challenge id
    purpose    TEXT    NOT NULL,                    -- register | upgrade | signin | usernameless
    user_id    BIGINT  REFERENCES users(id) ON DELETE CASCADE,  -- NULL: usernameless sign-in
    challenge  TEXT    NOT NULL,                    -- base64url of the 32-byte WebAuthn challenge
    state      TEXT    NOT NULL,                    -- the core's JSON
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX webauthn_ceremonies_expiry ON webauthn_ceremonies(expires_at);
