-- mfad schema v15 (SQLite): approval options (docs/approval.md).
-- approval_with_totp: the Approve sign-in page may take a TOTP code instead of a passkey.
-- approval_email_notice: mail the user that a sign-in waits for approval (a link only).
ALTER TABLE policy ADD COLUMN approval_with_totp INTEGER NOT NULL DEFAULT 0;
ALTER TABLE policy ADD COLUMN approval_email_notice INTEGER NOT NULL DEFAULT 0;

-- When each user was last mailed that an approval waits: one notice per user per interval,
-- taken by a conditional upsert (of racing instances, one mails), so a flood of password
-- attempts does not flood the mailbox.
CREATE TABLE approval_notices (
    user_id   INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    queued_at REAL    NOT NULL
);
