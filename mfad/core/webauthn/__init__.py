"""Passkeys (WebAuthn) and legacy U2F keys: registration, sign-in, import and upgrade.

python-fido2 (2.x) builds the Level 3 JSON options and verifies the client
data, RP id hash, flags and signature. This module adds what it leaves to the
relying party, and decides in a fixed order so every refusal has its reason:

- ceremonies (registration and sign-in) carry 32 random challenge bytes, live
  server-side only, are bound to their id (a registration id, or the sign-in
  challenge id and method), expire after ``challenge_ttl_seconds`` (5 min) and
  are consumed at most once, whatever the outcome: a replayed response finds
  nothing;
- origins are matched exactly against the allow-list (no subdomain rule, no
  cross-origin iframes); the RP id hash must be the RP id's — or, for a legacy
  U2F key, its AppID's (the ``appid`` extension: a second verifier whose RP id
  is the AppID, chosen by the assertion's signed rpIdHash);
- user presence always, user verification for every passkey (registration and
  sign-in); a key that cannot verify its user cannot become a passkey;
- only ES256, EdDSA and RS256 keys, checked to be well-formed at registration;
- the signature counter moves forward or both counters stay zero ("no
  counter", as synced passkeys do); otherwise the assertion is refused, audited
  as a possible cloned authenticator and counted;
- input that can never be valid (bad JSON, base64, CBOR, wrong types, sizes
  beyond the contract) raises InvalidInput before anything is written or
  consumed; a refused registration stores nothing; an upgrade adds the passkey
  and retires the U2F key in one transaction, or changes nothing.

Every registration, import, upgrade and refusal writes an audit row; sign-in
outcomes are audited by the sign-in service that calls the verifiers here.

The parts: ``input`` (parsing), ``attestation`` (keys and attestation statements),
``relying_party`` (what both ceremonies share), ``registration`` and ``assertion`` (the
two ceremonies, with the sign-in service's verifiers).
"""

from __future__ import annotations

from mfad.core.webauthn.assertion import SignIns
from mfad.core.webauthn.registration import Registrations


class WebauthnService(Registrations, SignIns):
    """Registration, import, upgrade and sign-in of passkeys and U2F keys."""
