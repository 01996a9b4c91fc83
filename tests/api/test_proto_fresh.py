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


def test_contract_is_documented(tmp_path: Path) -> None:
    """Every message, field, RPC, enum and non-zero enum value carries a comment."""
    import importlib.resources

    from google.protobuf import descriptor_pb2

    out = tmp_path / "descriptors.pb"
    include = importlib.resources.files("grpc_tools") / "_proto"
    subprocess.run(
        [
            sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT / 'proto'}", f"-I{include}",
            "--include_source_info", f"--descriptor_set_out={out}", str(ROOT / "proto/mfad/v1/mfad.proto"),
        ],
        check=True,
        timeout=120,
    )
    (fd,) = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file
    documented = {
        tuple(loc.path)
        for loc in fd.source_code_info.location
        if (loc.leading_comments + loc.trailing_comments).strip()
    }
    # Paths per descriptor.proto: 4 message_type, 2 field; 5 enum_type, 2 value; 6 service, 2 method.
    missing = [m.name for i, m in enumerate(fd.message_type) if (4, i) not in documented]
    missing += [
        f"{m.name}.{f.name}"
        for i, m in enumerate(fd.message_type)
        for j, f in enumerate(m.field)
        if (4, i, 2, j) not in documented
    ]
    missing += [e.name for i, e in enumerate(fd.enum_type) if (5, i) not in documented]
    missing += [
        v.name
        for i, e in enumerate(fd.enum_type)
        for j, v in enumerate(e.value)
        if v.number != 0 and (5, i, 2, j) not in documented
    ]
    missing += [s.name for i, s in enumerate(fd.service) if (6, i) not in documented]
    missing += [
        f"{s.name}.{m.name}"
        for i, s in enumerate(fd.service)
        for j, m in enumerate(s.method)
        if (6, i, 2, j) not in documented
    ]
    assert not missing, f"undocumented in mfad.proto: {missing}"
