"""A test's mfad.toml, and what ``load_config`` refuses in it."""

from __future__ import annotations

from pathlib import Path

import pytest

from mfad.config import load_config
from mfad.core.errors import ConfigError


def config_problems(tmp_path: Path, text: str) -> list[str]:
    """``text`` written to ``tmp_path/mfad.toml``, which load_config must refuse: the problems it names."""
    path = tmp_path / "mfad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as refused:
        load_config(path, env={})
    return refused.value.problems
