-- mfad schema v9 (SQLite): console roles for users.
-- NULL: an ordinary user. A role lets the user's own portal session call the Admin API
-- (admin: everything; helpdesk: users, unbinding, lock-outs, remembered devices; auditor: read-only).
ALTER TABLE users ADD COLUMN role TEXT CHECK (role IN ('admin', 'helpdesk', 'auditor'));
CREATE INDEX users_role ON users(role) WHERE role IS NOT NULL;
