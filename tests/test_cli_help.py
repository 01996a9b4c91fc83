"""Both command lines explain themselves: every option has help text, and with ``--json``
even a usage error is a JSON document."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mfad.cli import _parser as mfad_parser
from mfad_client.cli import build_parser as mfactl_parser

REPO = Path(__file__).resolve().parent.parent


def _options(parser: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, argparse.Action]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, f"{path} {name}")
        elif action.option_strings and not isinstance(action, argparse._HelpAction):
            yield path, action


@pytest.mark.parametrize("make", [mfad_parser, mfactl_parser], ids=["mfad", "mfactl"])
def test_every_option_has_help(make: object) -> None:
    parser = make()  # type: ignore[operator]
    top = {a.option_strings[-1] for a in parser._actions if a.option_strings and a.help not in (None, argparse.SUPPRESS)}
    missing = sorted({f"{path} {a.option_strings[-1]}" for path, a in _options(parser, parser.prog)
                      if not a.help or (a.help == argparse.SUPPRESS and a.option_strings[-1] not in top)})
    assert not missing, f"options without help text: {missing}"


def test_mfactl_documents_its_global_options_once() -> None:
    parser = mfactl_parser()
    assert "--tls-server-name" in parser.format_help()
    command = parser._subparsers._group_actions[0].choices["user"]  # type: ignore[union-attr]
    create = command._subparsers._group_actions[0].choices["create"]
    assert "--tls-server-name" not in create.format_help() and "mfactl --help" in create.format_help()
    assert create.parse_args(["alice", "--addr", "127.0.0.1:1", "--json"]).addr == "127.0.0.1:1"


def test_mfactl_usage_errors_are_json_with_json(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{REPO / 'clients'}:{REPO}"}
    for argv in (["--json", "user", "frobnicate"], ["user", "create", "--json"], ["--json", "policy", "set",
                                                                                   "--remember-days", "many"]):
        done = subprocess.run([sys.executable, "-m", "mfad_client", *argv], capture_output=True, text=True,
                              timeout=60, env=env, cwd=tmp_path)
        assert done.returncode == 2 and done.stdout == "", done
        error = json.loads(done.stderr)["error"]
        assert error["code"] == "USAGE" and error["message"].startswith("mfactl"), error
    plain = subprocess.run([sys.executable, "-m", "mfad_client", "user", "frobnicate"], capture_output=True,
                           text=True, timeout=60, env=env, cwd=tmp_path)
    assert plain.returncode == 2 and "invalid choice: 'frobnicate'" in plain.stderr and "usage:" in plain.stderr


COMPLETE = """
source <("$@" completion bash)
complete_line() {
    read -ra COMP_WORDS <<<"$1"
    [[ "$1" == *" " ]] && COMP_WORDS+=("")
    COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
    _mfactl
    echo "${COMPREPLY[*]}"
}
"""


@pytest.mark.parametrize(("line", "expected"), [
    ("mfactl us", "user"),
    ("mfactl --addr 127.0.0.1:50051 user cr", "create"),
    ("mfactl user create alice --pass", "--password-stdin"),
    ("mfactl token create ci --role service --exp", "--expires-in"),
    ("mfactl --json policy set --remember-d", "--remember-device --remember-days"),
    ("mfactl completion ", "--help --addr --token-file --tls-ca --tls-cert --tls-key --tls-server-name --timeout --json bash zsh"),
])
def test_bash_completion_completes_groups_commands_and_options(line: str, expected: str, tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{REPO / 'clients'}:{REPO}"}
    script = COMPLETE + f"complete_line {line!r}\n"
    done = subprocess.run(["bash", "-c", script, "bash", sys.executable, "-m", "mfad_client"], capture_output=True,
                          text=True, timeout=60, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == expected


#: A real interactive zsh in a pseudo-terminal (zsh/zpty): compinit, then the script that
#: ``mfactl completion zsh`` prints, then the line and a Tab; a key bound to a widget writes
#: the edited line to a file. What the user would see on the command line after Tab.
ZSH_DRIVER = r"""
zmodload zsh/zpty
out=$1 line=$2; shift 2
zpty -b z zsh -f -i
zpty -w z "PS1=''; autoload -U compinit && compinit -u -D"
zpty -w z "mfactl() { ${(j: :)${(q)@}} \"\$@\" }"
zpty -w z 'eval "$(mfactl completion zsh)"'
zpty -w z "dump() { print -r -- \"\$BUFFER\" > ${(q)out}; }; zle -N dump; bindkey '^X' dump"
zpty -w -n z "$line"$'\t\x18'
for i in {1..600}; do [[ -s $out ]] && break; sleep 0.1; done
zpty -d z
"""


@pytest.mark.parametrize(("line", "expected"), [
    ("mfactl us", "mfactl user "),
    ("mfactl --addr 127.0.0.1:50051 user cr", "mfactl --addr 127.0.0.1:50051 user create "),
    ("mfactl user create alice --pass", "mfactl user create alice --password-stdin "),
    ("mfactl --json policy set --remember-de", "mfactl --json policy set --remember-device "),
    ("mfactl completion z", "mfactl completion zsh "),
    ("mfactl remembered rev", "mfactl remembered revoke "),
])
def test_zsh_completion_completes_in_a_real_zsh(line: str, expected: str, tmp_path: Path) -> None:
    from peer_tools import need_tool

    zsh = need_tool("zsh", "zsh")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{REPO / 'clients'}:{REPO}", "HOME": str(tmp_path),
           "TERM": "dumb"}
    out = tmp_path / "line"
    done = subprocess.run([zsh, "-f", "-c", ZSH_DRIVER, "zsh", str(out), line, sys.executable, "-m", "mfad_client"],
                          capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert done.returncode == 0, done
    assert out.read_text().rstrip("\n") == expected


def test_mfactl_names_the_walkthrough_pitfalls(tmp_path: Path) -> None:
    """An empty MFAD_TOKEN (``export MFAD_TOKEN=$(mfad token create ...)`` after that command
    failed) is a usage error, and an unreachable daemon is named with its address."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{REPO / 'clients'}:{REPO}", "MFAD_ADDR": f"127.0.0.1:{port}"}
    empty = subprocess.run([sys.executable, "-m", "mfad_client", "user", "list"], capture_output=True, text=True,
                           timeout=60, env={**env, "MFAD_TOKEN": ""}, cwd=tmp_path)
    assert empty.returncode == 2 and "MFAD_TOKEN is set but empty" in empty.stderr, empty
    down = subprocess.run([sys.executable, "-m", "mfad_client", "user", "list"], capture_output=True, text=True,
                          timeout=60, env={**env, "MFAD_TOKEN": "mfad_x"}, cwd=tmp_path)
    assert down.returncode == 1, down
    assert f"cannot reach mfad at 127.0.0.1:{port}" in down.stderr and "MFAD_ADDR" in down.stderr, down


def test_mfactl_is_quiet_when_the_reader_of_its_output_has_gone(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{REPO / 'clients'}:{REPO}"}
    read_end, write_end = os.pipe()
    os.close(read_end)  # as `| head` does once it has its lines
    try:
        done = subprocess.run([sys.executable, "-m", "mfad_client", "completion", "bash"], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=60, env=env, cwd=tmp_path)
    finally:
        os.close(write_end)
    assert done.stderr == "" and done.returncode == 1, done
