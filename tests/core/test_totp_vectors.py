"""TOTP/HOTP against published vectors and an independent implementation (oathtool).

Proves that ``mfad.core.totp`` computes what RFC 4226 and RFC 6238 publish (all three
hash functions, with the seed sizes the RFC really uses), that codes made by
``oathtool`` are accepted, that only ASCII digit strings of a code's length get in,
and that the provisioning URI and its QR code say exactly what they should.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import random
import subprocess
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pytest

from peer_tools import need_tool
from mfad.core import totp
from mfad.core.errors import InvalidInput
from mfad.core.model import HashAlgorithm, TotpParams

DATA = Path(__file__).resolve().parent.parent / "data"
RFC4226_SECRET = b"12345678901234567890"


def read_csv(name: str) -> list[dict[str, str]]:
    with (DATA / name).open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


SEEDS = {HashAlgorithm(row["mode"]): row for row in read_csv("rfc6238_seeds.csv")}
HMAC_ROWS = read_csv("rfc4226_hmac_sha1.csv")
HOTP_ROWS = read_csv("rfc4226_hotp_6.csv")
HOTP_7_8_ROWS = read_csv("rfc4226_hotp_7_8_derived.csv")
TOTP_ROWS = read_csv("rfc6238_totp.csv")


def test_data_files_are_complete() -> None:
    assert [int(r["count"]) for r in HOTP_ROWS] == list(range(10))
    assert [int(r["count"]) for r in HMAC_ROWS] == list(range(10))
    assert [int(r["count"]) for r in HOTP_7_8_ROWS] == list(range(10))
    assert len(TOTP_ROWS) == 18 and {r["mode"] for r in TOTP_ROWS} == {"SHA1", "SHA256", "SHA512"}


# --- RFC 4226 Appendix D ------------------------------------------------------------------
@pytest.mark.parametrize("row", HMAC_ROWS, ids=lambda r: f"count{r['count']}")
def test_rfc4226_intermediate_hmac(row: dict[str, str]) -> None:
    mac = hmac.digest(RFC4226_SECRET, int(row["count"]).to_bytes(8, "big"), "sha1")
    assert mac.hex() == row["hmac_sha1_hex"]


@pytest.mark.parametrize("row", HOTP_ROWS, ids=lambda r: f"count{r['count']}")
def test_rfc4226_hotp_6_digits(row: dict[str, str]) -> None:
    assert totp.hotp(RFC4226_SECRET, int(row["count"]), 6) == row["hotp_6"]
    # The truncated value explains the code: the code is its last six decimal digits.
    assert int(row["truncated_hex"], 16) == int(row["truncated_decimal"])
    assert row["truncated_decimal"].zfill(6)[-6:] == row["hotp_6"]


@pytest.mark.parametrize("row", HOTP_7_8_ROWS, ids=lambda r: f"count{r['count']}")
def test_rfc4226_hotp_7_and_8_digits(row: dict[str, str]) -> None:
    assert totp.hotp(RFC4226_SECRET, int(row["count"]), 7) == row["hotp_7"]
    assert totp.hotp(RFC4226_SECRET, int(row["count"]), 8) == row["hotp_8"]


# --- RFC 6238 Appendix B --------------------------------------------------------------------
def seed(mode: HashAlgorithm) -> bytes:
    row = SEEDS[mode]
    key = bytes.fromhex(row["seed_hex"])
    assert key == row["seed_ascii"].encode("ascii")
    assert totp.base32_secret(key) == row["seed_base32"].rstrip("=")
    return key


def test_rfc6238_seed_sizes_follow_the_hash() -> None:
    assert [len(seed(m)) for m in (HashAlgorithm.SHA1, HashAlgorithm.SHA256, HashAlgorithm.SHA512)] == [20, 32, 64]
    # The common bug: the 20-byte seed with SHA-256/512 gives other codes than the table.
    assert totp.hotp(RFC4226_SECRET, 1, 8, HashAlgorithm.SHA256) == "32247374" != "46119246"
    assert totp.hotp(RFC4226_SECRET, 1, 8, HashAlgorithm.SHA512) == "69342147" != "90693936"


@pytest.mark.parametrize("row", TOTP_ROWS, ids=lambda r: f"{r['mode']}-{r['time_sec']}")
def test_rfc6238_totp(row: dict[str, str]) -> None:
    mode = HashAlgorithm(row["mode"])
    key = seed(mode)
    when = datetime.fromtimestamp(int(row["time_sec"]), UTC)
    assert when.strftime("%Y-%m-%d %H:%M:%S") == row["utc_time"]
    step = int(row["T_hex"], 16)
    assert totp.step_at(when, 30) == step
    assert totp.hotp(key, step, 8, mode) == row["totp_8"]
    assert totp.hotp(key, step, 6, mode) == row["totp_6_derived"]

    for digits, code in ((8, row["totp_8"]), (6, row["totp_6_derived"])):
        params = TotpParams(digits=digits, period=30, algorithm=mode)
        assert totp.match_code(key, code, when, params, last_step=-1, drift=0, window=0) == totp.TotpMatch(step, 0)
        # The same code is a replay once its step was accepted, and wrong under another hash.
        assert totp.match_code(key, code, when, params, last_step=step, drift=0, window=1) == totp.TotpReplay(step)
        other = next(m for m in HashAlgorithm if m is not mode)
        assert totp.match_code(key, code, when, TotpParams(digits=digits, algorithm=other), last_step=-1, drift=0,
                               window=0) == totp.TotpMismatch()


def test_window_around_rfc_t59() -> None:
    """Published neighbours of T=59 (counter 1): previous, current and next step match with
    window 1 and report their drift; two steps off does not."""
    key, when = seed(HashAlgorithm.SHA1), datetime.fromtimestamp(59, UTC)
    params = TotpParams(digits=6)
    for code, step in (("755224", 0), ("287082", 1), ("359152", 2)):
        assert totp.match_code(key, code, when, params, last_step=-1, drift=0, window=1) == totp.TotpMatch(step, step - 1)
    assert totp.match_code(key, "969429", when, params, last_step=-1, drift=0, window=1) == totp.TotpMismatch()
    # A remembered drift of +1 moves the window: counter 3 now matches, counter 0 no longer.
    assert totp.match_code(key, "969429", when, params, last_step=-1, drift=1, window=1) == totp.TotpMatch(3, 2)
    assert totp.match_code(key, "755224", when, params, last_step=-1, drift=1, window=1) == totp.TotpMismatch()


# --- oathtool, an independent implementation ------------------------------------------------
OATH_CASES = [
    # (algorithm, key bytes, digits, period, time)
    (HashAlgorithm.SHA1, 20, 6, 30, "2026-01-01 00:00:30 UTC"),
    (HashAlgorithm.SHA1, 20, 8, 30, "2026-01-01 09:00:10 UTC"),
    (HashAlgorithm.SHA1, 20, 6, 60, "2031-07-14 12:34:56 UTC"),
    (HashAlgorithm.SHA256, 32, 8, 30, "2026-01-01 00:00:30 UTC"),
    (HashAlgorithm.SHA256, 32, 6, 60, "2026-03-29 01:59:59 UTC"),
    (HashAlgorithm.SHA256, 20, 6, 30, "2040-02-29 23:59:59 UTC"),
    (HashAlgorithm.SHA512, 64, 8, 30, "2026-01-01 00:00:30 UTC"),
    (HashAlgorithm.SHA512, 64, 6, 60, "2038-01-19 03:14:08 UTC"),
    (HashAlgorithm.SHA512, 20, 8, 60, "2001-09-09 01:46:40 UTC"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("algorithm", "key_bytes", "digits", "period", "at"), OATH_CASES,
                         ids=[f"{a.value}-{k}B-{d}d-{p}s" for a, k, d, p, _ in OATH_CASES])
def test_oathtool_codes_are_accepted(algorithm: HashAlgorithm, key_bytes: int, digits: int, period: int,
                                     at: str) -> None:
    rng = random.Random(f"{algorithm}-{key_bytes}-{digits}-{period}")
    key = rng.randbytes(key_bytes)
    when = datetime.strptime(at, "%Y-%m-%d %H:%M:%S %Z").replace(tzinfo=UTC)
    params = TotpParams(digits=digits, period=period, algorithm=algorithm)
    out = subprocess.run(
        [need_tool("oathtool", "oathtool"), f"--totp={algorithm.value.lower()}", "-d", str(digits), "-s", f"{period}s",
         "-b", totp.base32_secret(key), "-N", at],
        check=True, capture_output=True, text=True, timeout=30)
    code = out.stdout.strip()
    assert len(code) == digits and code.isascii() and code.isdigit()
    step = totp.step_at(when, period)
    assert totp.match_code(key, code, when, params, last_step=-1, drift=0, window=0) == totp.TotpMatch(step, 0)
    assert totp.hotp(key, step, digits, algorithm) == code


# --- what can be a code ---------------------------------------------------------------------------
@pytest.mark.parametrize("code", ["123456", "12345678", "0000000", "000000"])
def test_ascii_digit_codes_pass_input_check(code: str) -> None:
    totp.check_code_input(code)


@pytest.mark.parametrize("code", [
    "",
    "１２３４５６",          # full-width digits (pyotp would NFKC them into "123456")
    "١٢٣٤٥٦",             # Arabic-Indic digits: str.isdigit() says yes
    "12345６",
    "¹２３456",
    " 123456",
    "123456 ",
    "123 456",
    "123\t456",
    "12345a",
    "abcdef",
    "+12345",
    "-12345",
    "12345",               # too short
    "123456789",           # too long
    "1" * 1000,
    "123456\x00",
])
def test_non_codes_are_refused_before_anything_else(code: str) -> None:
    with pytest.raises(InvalidInput) as err:
        totp.check_code_input(code)
    assert err.value.field == "code"


def test_match_code_never_matches_a_code_of_another_length() -> None:
    key, when = seed(HashAlgorithm.SHA1), datetime.fromtimestamp(59, UTC)
    assert totp.match_code(key, "94287082", when, TotpParams(digits=6), last_step=-1, drift=0,
                           window=1) == totp.TotpMismatch()
    assert totp.match_code(key, "287082", when, TotpParams(digits=8), last_step=-1, drift=0,
                           window=1) == totp.TotpMismatch()


# --- provisioning URI and QR code -----------------------------------------------------------------
def test_new_secrets_are_160_random_bits() -> None:
    secrets_seen = {totp.new_secret() for _ in range(64)}
    assert len(secrets_seen) == 64 and {len(s) for s in secrets_seen} == {20}


@pytest.mark.parametrize(("params", "suffix"), [
    (TotpParams(), ""),
    (TotpParams(digits=8, period=60, algorithm=HashAlgorithm.SHA256), "&algorithm=SHA256&digits=8&period=60"),
    (TotpParams(digits=6, period=30, algorithm=HashAlgorithm.SHA512), "&algorithm=SHA512"),
])
def test_provisioning_uri_is_exact(params: TotpParams, suffix: str) -> None:
    key = bytes(range(20))
    b32 = totp.base32_secret(key)
    assert b32 == "AAAQEAYEAUDAOCAJBIFQYDIOB4IBCEQT"
    uri = totp.provisioning_uri(key, account="alice@example.com", issuer="Acme Co", params=params)
    assert uri == f"otpauth://totp/Acme%20Co:alice%40example.com?secret={b32}&issuer=Acme%20Co{suffix}"

    parts = urlsplit(uri)
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp")
    assert unquote(parts.path) == "/Acme Co:alice@example.com"
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert query["secret"] == b32 and query["issuer"] == "Acme Co"
    # Absent parameters mean the Key Uri Format defaults: SHA1, 6 digits, 30 s.
    assert query.get("algorithm", "SHA1") == params.algorithm.value
    assert int(query.get("digits", "6")) == params.digits
    assert int(query.get("period", "30")) == params.period


@pytest.mark.slow
@pytest.mark.parametrize("account", ["alice", "bob@example.com", "ünïcode user"])
def test_qr_png_reads_back_as_the_exact_uri(tmp_path: Path, account: str) -> None:
    params = TotpParams(digits=8, period=60, algorithm=HashAlgorithm.SHA512)
    uri = totp.provisioning_uri(totp.new_secret(), account=account, issuer="mfad test", params=params)
    assert quote(account, safe="") in uri
    png = totp.qr_png(uri)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    path = tmp_path / "qr.png"
    path.write_bytes(png)
    out = subprocess.run([need_tool("zbarimg", "zbar-tools"), "--raw", "-q", str(path)], check=True, capture_output=True, timeout=30)
    assert out.stdout.decode("ascii").removesuffix("\n") == uri


def test_qr_svg_is_valid_xml() -> None:
    uri = totp.provisioning_uri(totp.new_secret(), account="alice", issuer="mfad", params=TotpParams())
    svg = totp.qr_svg(uri)
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert int(float(root.attrib["width"])) > 0 and int(float(root.attrib["height"])) > 0
    assert list(root), "the SVG draws something"


def test_hotp_uses_the_named_hash() -> None:
    """hotp() is the RFC 4226 construction for every hash, checked against hashlib directly."""
    key = bytes(range(64))
    for algorithm, name in ((HashAlgorithm.SHA1, "sha1"), (HashAlgorithm.SHA256, "sha256"),
                            (HashAlgorithm.SHA512, "sha512")):
        mac = hmac.new(key, (12345).to_bytes(8, "big"), getattr(hashlib, name)).digest()
        offset = mac[-1] & 0x0F
        value = int.from_bytes(mac[offset:offset + 4], "big") & 0x7FFFFFFF
        assert totp.hotp(key, 12345, 8, algorithm) == f"{value % 10**8:08d}"
