"""mfad installed the way docs/install.md installs it, with the real tools.

A clean virtualenv at ``<root>/opt/mfad`` gets ``pip install .`` (runtime dependencies
only) and the shipped systemd unit is verified against that install with
``systemd-analyze``; ``scripts/serve`` builds its own virtualenv without the test
dependencies; the Containerfile is parsed with Docker's own parser (no container
engine runs on the test machines, so it is not built here) and its health check is
run against the installed daemon.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import dockerfile
import pytest
from test_cli import http_get, write_config

import mfad

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "systemd" / "mfad.service"
INSTALL_SECONDS = 600  # a cold pip cache downloads every wheel; a warm one takes ~30 s


def _requirement_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9_.-]+", requirement)
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


def _project() -> dict[str, object]:
    project: dict[str, object] = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return project


def _test_only_packages() -> set[str]:
    project = _project()
    runtime = {_requirement_name(r) for r in project["dependencies"]}  # type: ignore[attr-defined]
    test = {_requirement_name(r) for r in project["optional-dependencies"]["test"]}  # type: ignore[index]
    return test - runtime


def _source_copy(target: Path) -> Path:
    """The repository's files (tracked and new, not ignored): no build artefacts, no .venv."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def _installed_names(python: Path) -> set[str]:
    done = subprocess.run([str(python), "-m", "pip", "list", "--format=json"], capture_output=True, text=True,
                          check=True, timeout=60)
    return {_requirement_name(p["name"]) for p in json.loads(done.stdout)}


def _unit_root(root: Path) -> Path:
    """``root`` as systemd-analyze --root sees a host: the unit installed, the targets it names."""
    (root / "etc/systemd/system").mkdir(parents=True, exist_ok=True)
    shutil.copy(UNIT, root / "etc/systemd/system/mfad.service")
    targets = root / "usr/lib/systemd/system"
    targets.mkdir(parents=True, exist_ok=True)
    for target in Path("/usr/lib/systemd/system").glob("*.target"):
        shutil.copy(target, targets)
    (root / "bin").mkdir(exist_ok=True)
    shutil.copy("/bin/kill", root / "bin/kill")  # ExecReload=
    return root


def _health_check_argv(python: Path, metrics_port: int) -> list[str]:
    """The Containerfile's HEALTHCHECK command, for an install at ``python``'s venv and this port."""
    (check,) = [c for c in dockerfile.parse_file(str(REPO / "Containerfile")) if c.cmd == "HEALTHCHECK"]
    assert check.json and check.value[0] == "CMD", "HEALTHCHECK must be CMD in exec form"
    argv = list(check.value[1:])
    assert argv[0] == "/opt/mfad/bin/python"
    return [str(python), *[a.replace("127.0.0.1:9812", f"127.0.0.1:{metrics_port}") for a in argv[1:]]]


@pytest.mark.slow
def test_pip_install_gives_the_commands_without_test_dependencies_and_the_unit_verifies(tmp_path: Path) -> None:
    source = _source_copy(tmp_path / "src")
    root = tmp_path / "root"
    venv = root / "opt" / "mfad"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    done = subprocess.run([str(venv / "bin/pip"), "install", "-q", "--disable-pip-version-check", str(source)],
                          capture_output=True, text=True, timeout=INSTALL_SECONDS)
    assert done.returncode == 0, done.stderr

    installed = _installed_names(venv / "bin/python")
    assert not installed & _test_only_packages(), f"test dependencies installed: {installed & _test_only_packages()}"
    assert {"mfad", "grpcio", "pyotp"} <= installed
    for script in _project()["scripts"]:  # type: ignore[attr-defined]
        done = subprocess.run([str(venv / "bin" / script), "--help"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"{script} --help: {done.stderr}"
    for script in ("mfad", "mfactl"):
        done = subprocess.run([str(venv / "bin" / script), "--version"], capture_output=True, text=True, timeout=60)
        assert done.stdout.strip() == f"{script} {mfad.__version__}", done.stderr

    # The shipped unit against this install: ExecStart=/opt/mfad/bin/mfad must exist.
    _unit_root(root)
    verify = subprocess.run(["systemd-analyze", "verify", f"--root={root}", "--man=no", "mfad.service"],
                            capture_output=True, text=True, timeout=60)
    assert (verify.returncode, verify.stdout + verify.stderr) == (0, ""), verify.stderr

    # The installed daemon runs from the package data alone (migrations, dictionary, stubs);
    # SIGHUP (ExecReload=) reloads and leaves it running; the Containerfile's health check follows /readyz.
    cfg = tmp_path / "run" / "mfad.toml"
    cfg.parent.mkdir()
    ports = write_config(cfg, f"sqlite:///{cfg.parent / 'mfad.db'}")
    health = _health_check_argv(venv / "bin/python", ports["metrics"])
    proc = subprocess.Popen([str(venv / "bin/mfad"), "serve", "--config", str(cfg)], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    try:
        deadline = time.monotonic() + 30
        while subprocess.run(health, capture_output=True, timeout=10).returncode != 0:
            assert proc.poll() is None, f"daemon exited {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}"
            assert time.monotonic() < deadline, "health check never passed"
            time.sleep(0.2)
        proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert proc.poll() is None, "SIGHUP ended the daemon"
        assert http_get(ports["metrics"], "/readyz")[0] == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert f"reloaded {cfg}: nothing to apply" in stderr
    assert subprocess.run(health, capture_output=True, timeout=10).returncode != 0


@pytest.mark.slow
def test_scripts_serve_installs_runtime_dependencies_only(tmp_path: Path) -> None:
    source = _source_copy(tmp_path / "src")
    done = subprocess.run(["scripts/serve", "--help"], cwd=source, capture_output=True, text=True,
                          timeout=INSTALL_SECONDS, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert done.returncode == 0, done.stderr
    assert "usage: mfad serve" in done.stdout
    installed = _installed_names(source / ".venv/bin/python")
    assert "mfad" in installed and not installed & _test_only_packages()


def test_unit_security_review_keeps_its_exposure(tmp_path: Path) -> None:
    """``systemd-analyze security`` rates the unit 1.3 ("OK"); what is left and why: docs/install.md."""
    root = _unit_root(tmp_path / "root")
    (root / "opt/mfad/bin").mkdir(parents=True)
    review = subprocess.run(["systemd-analyze", "security", "--offline=yes", f"--root={root}", "--threshold=13",
                             "mfad.service"], capture_output=True, text=True, timeout=60)
    assert review.returncode == 0, review.stdout + review.stderr
    assert "Overall exposure level for mfad.service: 1.3" in review.stdout


def test_unit_matches_the_install_path() -> None:
    unit = UNIT.read_text()
    assert "\nExecStart=/opt/mfad/bin/mfad serve --config /etc/mfad/mfad.toml\n" in unit
    assert "\nRestartPreventExitStatus=2\n" in unit
    assert "\nExecReload=/bin/kill -HUP $MAINPID\n" in unit
    install_doc = (REPO / "docs" / "install.md").read_text()
    assert "python3 -m venv /opt/mfad" in install_doc and "/opt/mfad/bin/pip install" in install_doc


def test_containerfile_is_multi_stage_non_root_with_a_health_check() -> None:
    commands = dockerfile.parse_file(str(REPO / "Containerfile"))  # Docker's parser: a syntax error raises
    stages = [i for i, c in enumerate(commands) if c.cmd == "FROM"]
    assert len(stages) >= 2, "multi-stage: build, then a clean runtime image"
    final = commands[stages[-1]:]
    users = [c.value[0] for c in final if c.cmd == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root"), "the runtime stage must not run as root"
    assert [c for c in final if c.cmd == "HEALTHCHECK"], "a health check"
    assert any(c.cmd == "COPY" and "--from=build" in c.flags for c in final), "the runtime copies the build's venv"
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    for c in commands:
        if c.cmd in ("COPY", "ADD") and not any(f.startswith("--from=") for f in c.flags):
            for source in c.value[:-1]:
                assert (REPO / source).exists(), f"{c.original}: {source} is not in the repository"
                assert source not in ignored, f"{c.original}: {source} is excluded by .dockerignore"
    entry = next(c for c in final if c.cmd == "ENTRYPOINT")
    assert entry.json and entry.value[0] == "/opt/mfad/bin/mfad"


def test_container_config_is_valid(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "mfad", "check-config", "--config",
                           str(REPO / "deploy/container/mfad.toml")], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
