-- mfad schema v3 (SQLite): RADIUS requests being decided or answered, shared by every
-- instance on this store so that a retransmission reaching another instance is not
-- decided twice (RFC 5080 §2.2.2). Rows live seconds; the RADIUS service purges them.
CREATE TABLE radius_requests (
    request_key BLOB PRIMARY KEY,   -- SHA-256 of (NAS address, port, Identifier, Request Authenticator)
    reply       BLOB,               -- the reply octets; NULL while an instance is deciding (a claim)
    expires_at  REAL NOT NULL       -- claim or reply expiry (UNIX seconds)
);
CREATE INDEX radius_requests_expiry ON radius_requests(expires_at);
