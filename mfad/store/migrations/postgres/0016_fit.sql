-- mfad schema v16 (PostgreSQL): fitting into existing RADIUS networks (docs/directory.md, docs/radius.md).
-- challenges.first_factor_reply: the attributes an upstream RADIUS server's Access-Accept
-- carried that the RADIUS client's allow-list (upstream_reply_attributes) names, kept with the
-- challenge so that the Access-Accept after the code carries them too (JSON [[name, base64]]).
ALTER TABLE challenges ADD COLUMN first_factor_reply TEXT;

-- require_message_authenticator = "auto": a NAS (client name, source address) that has once sent
-- a valid Message-Authenticator must send one from then on (FreeRADIUS's behaviour), on every
-- instance sharing the store.
CREATE TABLE radius_signed_clients (
    client     TEXT NOT NULL,
    address    TEXT NOT NULL,
    first_seen DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (client, address)
);
