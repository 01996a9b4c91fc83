"""The operator docs keep up with the code: every configuration key is documented."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

from mfad.config import _KEY_ALIASES, Config

DOCS = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
_TOML_NAME = {field: key for key, field in _KEY_ALIASES.items()}


def _keys(cls: type, prefix: str) -> list[tuple[str, str]]:
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        name = _TOML_NAME.get(f.name, f.name)
        inner = typing.get_args(hints[f.name])
        if dataclasses.is_dataclass(hints[f.name]):
            out += _keys(hints[f.name], f"{prefix}{name}.")
        elif inner and dataclasses.is_dataclass(inner[0]):
            out += _keys(inner[0], f"{prefix}{name}[].")
        else:
            out.append((prefix.rstrip("."), name))
    return out


def test_every_config_key_is_documented() -> None:
    text = DOCS.read_text()
    missing = []
    for section, key in _keys(Config, ""):
        heading = f"`[{section}]`" if "[]" not in section else f"`[[{section.replace('[]', '')}]]`"
        start = text.find(heading)
        if start < 0 or f"`{key}`" not in text[start:]:
            missing.append(f"{section}.{key}")
    assert not missing, f"undocumented in docs/configuration.md: {missing}"
