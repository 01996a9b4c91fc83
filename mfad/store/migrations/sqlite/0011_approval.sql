-- mfad schema v11 (SQLite): out-of-band approval of sign-ins (docs/approval.md).
-- One pending approval per user (user_id is the key: a new one replaces the old), bound to
-- the sign-in challenge it approves (gone with it) and expiring with it. state: pending →
-- approved → used (the sign-in took it), or pending → refused (denied, wrong number).
CREATE TABLE approvals (
    user_id        INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    id             TEXT    NOT NULL UNIQUE,  -- random; how the portal names it
    challenge_hash TEXT    NOT NULL UNIQUE REFERENCES challenges(id_hash) ON DELETE CASCADE,
    number         INTEGER NOT NULL,         -- the two digits the VPN shows
    client         TEXT,                     -- the NAS (RADIUS client name) or gRPC caller
    source         TEXT,                     -- Calling-Station-Id or the NAS's address
    protocol       TEXT    NOT NULL,
    created_at     REAL    NOT NULL,
    expires_at     REAL    NOT NULL,
    state          TEXT    NOT NULL DEFAULT 'pending',
    decided_at     REAL
);
CREATE INDEX approvals_expiry ON approvals(expires_at);

-- Approval is on by default: a policy that allowed every method before it existed allows it too.
UPDATE policy SET allowed_methods = 'approval,email,passkey,recovery,totp,u2f'
 WHERE allowed_methods = 'email,passkey,recovery,totp,u2f';
