"""Runs ``mfactl`` as a separate process against a test gRPC server, as an operator would.

The tests that check mfactl's output (text, ``--json``, exit codes) share this one
runner: the source tree on PYTHONPATH, the server's address and caller token in the
environment, a bounded wait.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


async def run_mfactl(address: str, token: str, *args: str,
                     timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MFAD_ADDR": address, "MFAD_TOKEN": token,
           "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "clients")])}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "mfad_client", *args, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return subprocess.CompletedProcess([*args], proc.returncode, out.decode(), err.decode())
