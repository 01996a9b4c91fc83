-- mfad schema v14 (SQLite): approval hold mode (docs/approval.md).
-- A held approval belongs to a RADIUS request that gets no reply until it is decided
-- (append/otp_only clients with approval_hold_seconds): there is no number to match.
ALTER TABLE approvals ADD COLUMN held INTEGER NOT NULL DEFAULT 0;
-- The global policy may forbid hold mode (allowed by default: a client must also enable it).
ALTER TABLE policy ADD COLUMN approval_hold INTEGER NOT NULL DEFAULT 1;
