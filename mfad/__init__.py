"""mfad: a second-factor authentication daemon (RADIUS, gRPC, TOTP, email codes, passkeys)."""

__version__ = "0.1.0"
