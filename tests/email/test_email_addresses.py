"""Address validation as a property: whatever is typed, what comes out is safe to put in an
SMTP envelope and a header, or an InvalidInput naming ``address`` is raised."""

from __future__ import annotations

import string

from hypothesis import given, settings
from hypothesis import strategies as st

from mfad.core.addresses import MAX_ADDRESS, mask_address, normalize_address
from mfad.core.errors import InvalidInput

_ATEXT = string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~"
local = st.lists(st.text(_ATEXT, min_size=1, max_size=10), min_size=1, max_size=3).map(".".join)
label = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=12)
domain = st.lists(label, min_size=1, max_size=3).map(lambda parts: ".".join([*parts, "example"]))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_anything_typed_is_refused_or_safe(text: str) -> None:
    try:
        out = normalize_address(text)
    except InvalidInput as exc:
        assert exc.field == "address"
        return
    assert out.isascii() and out.isprintable() and " " not in out and len(out) <= MAX_ADDRESS
    assert out.count("@") == 1 and not any(ch in out for ch in '\r\n\x00<>,;:"()[]\\')


@settings(max_examples=200, deadline=None)
@given(local, domain)
def test_plain_addresses_are_kept(l: str, d: str) -> None:
    address = f"{l}@{d.upper()}"
    if len(l) <= 64 and len(address) <= MAX_ADDRESS:
        assert normalize_address(address) == f"{l}@{d}"
        assert mask_address(f"{l}@{d}") == f"{l[0]}***@{d}"
