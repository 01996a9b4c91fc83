"""The real peer programs the tests talk to (DESIGN.md §5): where they are, and how a test
says one is missing.

Every lookup goes through :func:`find_tool` (PATH, then the sbin directories that a
non-root PATH lacks). A test that cannot run without a peer asks :func:`need_tool`, or
skips with ``missing(...)`` as its reason. Under
``CI=true`` ``conftest.py`` turns such a skip into a failure: a CI run never passes by
skipping what it was meant to check. Elsewhere (a laptop without FreeRADIUS) it skips.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

MARK = "missing tool: "
_SBIN = ("/usr/sbin", "/sbin")


def find_tool(name: str) -> str | None:
    """The path of the program ``name``, or None when it is not installed."""
    found = shutil.which(name)
    if found is not None:
        return found
    return next((str(Path(d) / name) for d in _SBIN if os.access(Path(d) / name, os.X_OK)), None)


def need_tool(name: str, package: str) -> str:
    """The path of a program the test cannot do without. Missing: the test skips with
    ``missing(...)`` as its reason, which is a failure under ``CI=true``."""
    found = find_tool(name)
    if found is None:
        pytest.skip(missing(name, f"Debian package {package}; scripts/test installs it"))
    return found


def missing(tools: str, hint: str = "scripts/test installs it") -> str:
    return f"{MARK}{tools} ({hint})"


def fails_in_ci(skip_text: str) -> bool:
    """Whether a skip with this text is a failure in this run."""
    return os.environ.get("CI") == "true" and MARK in skip_text


def stop_peer(process: subprocess.Popen[bytes] | subprocess.Popen[str], timeout: float = 10) -> None:
    """Stop a peer program: SIGTERM, and SIGKILL if it has not exited ``timeout`` seconds later."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout)
