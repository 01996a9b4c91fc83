-- mfad schema v7 (SQLite): caller tokens may expire.
-- NULL: the token never expires (as every token made before this version).
ALTER TABLE caller_tokens ADD COLUMN expires_at REAL;
