"""The shipped NAS examples (clients/nas/): where they are, and mfad's side of them — a
client entry of the shipped clients/nas/mfad.toml as mfad's own loader reads it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from radius_peers import SECRET

from mfad.config import RadiusClientSettings, load_config

SHIPPED_NAS = Path(__file__).resolve().parents[2] / "clients" / "nas"


def shipped_client(directory: Path, name: str, *, address: str = "127.0.0.1") -> RadiusClientSettings:
    """The client ``name`` of the shipped clients/nas/mfad.toml, read by mfad's own loader
    (its /etc/mfad/*.secret files in ``directory``, holding the tests' secret), moved to
    ``address``: every other setting is the shipped one."""
    directory.mkdir(exist_ok=True)
    (directory / "mfad.toml").write_text((SHIPPED_NAS / "mfad.toml").read_text()
                                         .replace("/etc/mfad/", f"{directory}/"))
    for secret in ("freeradius", "hosts", "vpn", "openvpn"):
        (directory / f"{secret}.secret").write_text(SECRET.decode() + "\n")
        (directory / f"{secret}.secret").chmod(0o600)
    (client,) = [c for c in load_config(directory / "mfad.toml", env={}).radius.clients if c.name == name]
    return dataclasses.replace(client, address=address)


def replaced(text: str, changes: list[tuple[str, str]], name: str) -> str:
    """``text`` of the shipped file ``name`` with each change made once; a change that no
    longer applies fails the test (the example changed shape: update the test with it)."""
    for old, new in changes:
        assert old in text, f"clients/nas/{name} no longer has {old!r}: update this test"
        text = text.replace(old, new, 1)
    return text
