"""The committed generated code in mfad/_proto/ matches proto/ (scripts/gen_proto)."""

from __future__ import annotations

import difflib
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ROOT / "mfad" / "_proto" / "mfad" / "v1"
FILES = ("mfad_pb2.py", "mfad_pb2.pyi", "mfad_pb2_grpc.py", "mfad_pb2_grpc.pyi")


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_proto"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    fresh_dir = tmp_path / "mfad" / "_proto" / "mfad" / "v1"
    stale = []
    for name in FILES:
        committed = (GENERATED / name).read_text(encoding="utf-8").splitlines(keepends=True)
        fresh = (fresh_dir / name).read_text(encoding="utf-8").splitlines(keepends=True)
        if committed != fresh:
            diff = "".join(list(difflib.unified_diff(committed, fresh, f"committed/{name}", f"fresh/{name}"))[:40])
            stale.append(diff)
    assert not stale, "mfad/_proto is stale: run scripts/gen_proto and commit\n" + "\n".join(stale)


def test_generated_code_imports_without_path_tricks() -> None:
    # A fresh interpreter with only the repository root importable, as when installed.
    code = (
        "from mfad._proto.mfad.v1 import mfad_pb2, mfad_pb2_grpc\n"
        "names = sorted(mfad_pb2.DESCRIPTOR.services_by_name)\n"
        "assert names == ['Admin', 'Authentication', 'Enrollment'], names\n"
        "assert mfad_pb2.DESCRIPTOR.package == 'mfad.v1'\n"
        "assert mfad_pb2_grpc.mfad_dot___proto_dot_mfad_dot_v1_dot_mfad__pb2 is mfad_pb2\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=60)


def test_every_enum_has_an_unspecified_zero() -> None:
    from mfad._proto.mfad.v1 import mfad_pb2

    for enum in mfad_pb2.DESCRIPTOR.enum_types_by_name.values():
        zero = enum.values_by_number[0].name
        assert zero.endswith("_UNSPECIFIED"), f"{enum.name}: zero value {zero}"
