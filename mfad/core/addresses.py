"""Email addresses as mfad accepts them: a defensible subset of RFC 5322 ``addr-spec``.

Guarantee: an address that passes :func:`normalize_address` is plain ASCII,
``local@domain`` with nothing else in it, so it can go into an SMTP envelope
and a ``To:`` header without any quoting or escaping — no CR, LF, NUL, other
control character, space, angle bracket, comma or second ``@`` can survive.

What is accepted, and why the rest is refused:
- the local part is an RFC 5322 ``dot-atom`` (``atext`` runs separated by
  single dots), at most 64 octets (RFC 5321 §4.5.3.1.1). Quoted local parts
  (``"john smith"@example.com``) and comments are legal but are almost never
  real mailboxes and are the classic carrier of header injection: refused.
  Non-ASCII local parts need SMTPUTF8 end to end: refused with that reason.
- the domain is at least two DNS labels of letters, digits and inner hyphens,
  each 1-63 octets, the top label not all digits; domain literals
  (``user@[192.0.2.1]``) are refused. It is lower-cased.
- an internationalised domain is converted to its ASCII (punycode) form with
  the standard library's IDNA codec (IDNA 2003). Where IDNA 2003 and IDNA 2008
  disagree (the deviation characters ß, ς, ZWJ, ZWNJ map to different domains)
  or where nameprep would silently rewrite what was typed (full-width letters,
  ...), the address is refused instead of being mailed somewhere else.
- the whole address is at most 254 octets (RFC 5321 path limit minus the
  angle brackets), checked on the ASCII form.
"""

from __future__ import annotations

import string
import unicodedata

from mfad.core.errors import InvalidInput

MAX_ADDRESS = 254  # RFC 5321 §4.5.3.1.3: a 256-octet path includes "<" and ">"
MAX_LOCAL = 64  # RFC 5321 §4.5.3.1.1
MAX_LABEL = 63  # RFC 1035 §2.3.4
#: Longest input looked at before conversion; a Unicode domain grows under punycode.
MAX_INPUT = 1024

_ATEXT = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~")
_LDH = frozenset(string.ascii_lowercase + string.digits + "-")
#: Characters IDNA 2003 maps away but IDNA 2008 keeps: the same text would name two domains.
_DEVIATIONS = frozenset("\u00df\u03c2\u200c\u200d")


class AddressError(InvalidInput):
    """An address mfad will not mail; ``reason`` says why in words a user can act on."""

    def __init__(self, reason: str, field: str = "address") -> None:
        super().__init__(field, reason)


def normalize_address(text: str, *, field: str = "address") -> str:
    """The address as it will be stored and mailed (ASCII, domain lower-cased)."""
    if not isinstance(text, str) or not text:
        raise AddressError("must not be empty", field)
    if len(text) > MAX_INPUT:
        raise AddressError(f"must be at most {MAX_ADDRESS} characters", field)
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") and ch not in "\u200c\u200d" for ch in text):
        raise AddressError("must not contain control characters (line breaks, NUL, ...)", field)
    if any(ch.isspace() for ch in text):
        raise AddressError("must not contain spaces", field)
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain:
        raise AddressError("must look like name@example.com", field)
    ascii_domain = _domain(domain, field)
    _local(local, field)
    address = f"{local}@{ascii_domain}"
    if len(address) > MAX_ADDRESS:
        raise AddressError(f"must be at most {MAX_ADDRESS} characters", field)
    return address


def _local(local: str, field: str) -> None:
    if local.startswith('"') or "@" in local:
        raise AddressError("quoted local parts and a second '@' are not accepted", field)
    if not local.isascii():
        raise AddressError("the part before '@' must be ASCII (internationalised mailboxes are not supported)",
                           field)
    if len(local) > MAX_LOCAL:
        raise AddressError(f"the part before '@' must be at most {MAX_LOCAL} characters", field)
    for atom in local.split("."):
        if not atom:
            raise AddressError("the part before '@' must not start or end with a dot or contain '..'", field)
        if not _ATEXT.issuperset(atom):
            bad = next(ch for ch in atom if ch not in _ATEXT)
            raise AddressError(f"the part before '@' must not contain {bad!r}", field)


def _domain(domain: str, field: str) -> str:
    if domain.startswith("["):
        raise AddressError("address literals (user@[192.0.2.1]) are not accepted: use a domain name", field)
    if domain.endswith("."):
        raise AddressError("the domain must not end with a dot", field)
    if not domain.isascii():
        domain = _idna(domain, field)
    labels = domain.lower().split(".")
    if len(labels) < 2:
        raise AddressError("the domain must have at least two parts (example.com)", field)
    for label in labels:
        if not label:
            raise AddressError("the domain must not contain empty parts ('..')", field)
        if len(label) > MAX_LABEL:
            raise AddressError(f"each part of the domain must be at most {MAX_LABEL} characters", field)
        if not _LDH.issuperset(label) or label.startswith("-") or label.endswith("-"):
            raise AddressError("the domain may contain only letters, digits, dots and inner hyphens", field)
    if labels[-1].isdigit():
        raise AddressError("the domain's last part must not be a number", field)
    return ".".join(labels)


def _idna(domain: str, field: str) -> str:
    typed = unicodedata.normalize("NFC", domain).lower()
    if any(ch in _DEVIATIONS for ch in typed):
        raise AddressError("the domain contains ß, ς or a joiner, which IDNA 2003 and 2008 map to different "
                           "domains: type its ASCII (xn--) form", field)
    try:
        ascii_form = typed.encode("idna").decode("ascii")
        round_trip = ascii_form.encode("ascii").decode("idna")
    except UnicodeError:
        raise AddressError("the domain is not a valid internationalised domain name", field) from None
    if round_trip != typed:
        raise AddressError("the domain contains characters that would be rewritten when converted "
                           "(full-width or compatibility forms): type it in its plain form", field)
    return ascii_form


def mask_address(address: str) -> str:
    """``alice@example.com`` → ``a***@example.com``: enough to recognise, not to harvest."""
    local, _, domain = address.rpartition("@")
    return f"{local[:1]}***@{domain}"
