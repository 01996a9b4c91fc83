"""The real peer programs the tests talk to (DESIGN.md §5): how a test says one is missing.

A test that cannot run without a peer skips with ``missing(...)`` as its reason. Under
``CI=true`` ``conftest.py`` turns such a skip into a failure: a CI run never passes by
skipping what it was meant to check. Elsewhere (a laptop without FreeRADIUS) it skips.
"""

from __future__ import annotations

import os

MARK = "missing tool: "


def missing(tools: str, hint: str = "scripts/test installs it") -> str:
    return f"{MARK}{tools} ({hint})"


def fails_in_ci(skip_text: str) -> bool:
    """Whether a skip with this text is a failure in this run."""
    return os.environ.get("CI") == "true" and MARK in skip_text
