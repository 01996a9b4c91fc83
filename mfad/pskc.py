"""PSKC (RFC 6030) key containers: the TOTP keys in them, for ``mfad import pskc``, and
the container ``mfad export --include-secrets`` writes.

Reads plain-value containers and the pre-shared-key variant (RFC 6030 section 6.1:
AES-CBC encrypted secrets, authenticated with an HMAC under the container's MAC key).
Guarantees: an encrypted secret is used only after its ValueMAC verified; a
container with a DOCTYPE is refused (no entity tricks); every key that cannot be
imported — HOTP (mfad verifies time-based codes only), no user, a bad MAC — is
named by its Id and nothing of the file is imported. The TOTP profile's parameters
(``ResponseFormat Length``, ``TimeInterval``, a ``Suite`` of HMAC-SHA256/-SHA512)
become the device's. What :func:`write_pskc` writes is the pre-shared-key variant (never
a plain value): each secret AES-128-CBC encrypted under the key, a fresh MAC key for the
container (itself encrypted), a ValueMAC per secret — what :func:`parse_pskc` reads back.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import xml.etree.ElementTree as ET
from collections.abc import Iterable

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from mfad.core.model import HashAlgorithm, TotpParams
from mfad.import_records import BadImportFile, TotpRecord, UserRecord

NS = {"p": "urn:ietf:params:xml:ns:keyprov:pskc", "xenc": "http://www.w3.org/2001/04/xmlenc#"}
_TOTP = ("urn:ietf:params:xml:ns:keyprov:pskc:totp", "urn:ietf:params:xml:ns:keyprov:pskc#totp")
_HOTP = ("urn:ietf:params:xml:ns:keyprov:pskc:hotp", "urn:ietf:params:xml:ns:keyprov:pskc#hotp")
_CIPHERS = {f"http://www.w3.org/2001/04/xmlenc#aes{bits}-cbc": bits // 8 for bits in (128, 192, 256)}
_MACS = {"http://www.w3.org/2000/09/xmldsig#hmac-sha1": "sha1",
         "http://www.w3.org/2001/04/xmldsig-more#hmac-sha256": "sha256",
         "http://www.w3.org/2001/04/xmldsig-more#hmac-sha512": "sha512"}
_SUITES = {"HMAC-SHA1": HashAlgorithm.SHA1, "HMAC-SHA256": HashAlgorithm.SHA256, "HMAC-SHA512": HashAlgorithm.SHA512}


class _Refused(ValueError):
    pass


def _b64(text: str | None, what: str) -> bytes:
    try:
        return base64.b64decode("".join((text or "").split()), validate=True)
    except (binascii.Error, ValueError):
        raise _Refused(f"{what}: not base64") from None


def _decrypt(encrypted: ET.Element, key: bytes | None, what: str) -> bytes:
    """``IV || ciphertext`` under AES-CBC with PKCS#7 padding (XML Encryption)."""
    if key is None:
        raise _Refused(f"{what} is encrypted: give the pre-shared key (--pskc-key-file)")
    method = encrypted.find("xenc:EncryptionMethod", NS)
    size = _CIPHERS.get(method.get("Algorithm", "") if method is not None else "")
    if size is None:
        raise _Refused(f"{what}: only AES-CBC encryption is supported")
    if len(key) != size:
        raise _Refused(f"{what}: the pre-shared key must be {size} bytes for this cipher")
    data = _b64(encrypted.findtext("xenc:CipherData/xenc:CipherValue", namespaces=NS), what)
    if len(data) < 32 or len(data) % 16:
        raise _Refused(f"{what}: the cipher value is not IV and whole blocks")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(data[:16])).decryptor()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        return unpadder.update(decryptor.update(data[16:]) + decryptor.finalize()) + unpadder.finalize()
    except ValueError:
        raise _Refused(f"{what}: cannot be decrypted with this key") from None


def _mac_key(root: ET.Element, key: bytes | None) -> tuple[bytes, str] | None:
    method = root.find("p:MACMethod", NS)
    if method is None:
        return None
    digest = _MACS.get(method.get("Algorithm", ""))
    if digest is None:
        raise _Refused(f"MACMethod {method.get('Algorithm')!r} is not supported")
    encrypted = method.find("p:MACKey", NS)
    if encrypted is None:
        raise _Refused("MACMethod has no MACKey")
    return _decrypt(encrypted, key, "MACKey"), digest


def _secret(secret: ET.Element, key: bytes | None, mac: tuple[bytes, str] | None, what: str) -> bytes:
    plain = secret.findtext("p:PlainValue", namespaces=NS)
    if plain is not None:
        return _b64(plain, what)
    encrypted = secret.find("p:EncryptedValue", NS)
    if encrypted is None:
        raise _Refused(f"{what}: no PlainValue or EncryptedValue")
    if mac is None:
        raise _Refused(f"{what}: an encrypted secret without a MACMethod cannot be checked")
    cipher_value = _b64(encrypted.findtext("xenc:CipherData/xenc:CipherValue", namespaces=NS), what)
    expected = _b64(secret.findtext("p:ValueMAC", namespaces=NS), f"{what} ValueMAC")
    if not hmac.compare_digest(hmac.new(mac[0], cipher_value, getattr(hashlib, mac[1])).digest(), expected):
        raise _Refused(f"{what}: the ValueMAC does not match (a wrong key, or the file was changed)")
    return _decrypt(encrypted, key, what)


def _username(key: ET.Element, package: ET.Element) -> str:
    """``UserId`` of the key (or its package); of a DN (``UID=jsmith,DC=...``) the UID."""
    text = (key.findtext("p:UserId", namespaces=NS) or package.findtext("p:UserId", namespaces=NS) or "").strip()
    for part in text.split(","):
        name, _, value = part.partition("=")
        if name.strip().upper() in ("UID", "CN") and value.strip():
            return value.strip()
    if "=" in text:
        raise _Refused(f"UserId {text!r} names no UID or CN")
    if not text:
        raise _Refused("no UserId: PSKC keys are imported for the user it names")
    return text


def _totp(key: ET.Element, package: ET.Element, secret_key: bytes | None,
          mac: tuple[bytes, str] | None) -> TotpRecord:
    secret = key.find("p:Data/p:Secret", NS)
    if secret is None:
        raise _Refused("no Data/Secret")
    value = _secret(secret, secret_key, mac, "Secret")  # first: a wrong key is named as such
    algorithm = key.get("Algorithm", "")
    if algorithm in _HOTP:
        raise _Refused("a counter-based (HOTP) key: only time-based (TOTP) keys can be imported")
    if algorithm not in _TOTP:
        raise _Refused(f"algorithm {algorithm!r} is not TOTP")
    username = _username(key, package)
    length = key.find("p:AlgorithmParameters/p:ResponseFormat", NS)
    suite = (key.findtext("p:AlgorithmParameters/p:Suite", namespaces=NS) or "HMAC-SHA1").strip().upper()
    if suite not in _SUITES:
        raise _Refused(f"Suite {suite!r}: must be HMAC-SHA1, HMAC-SHA256 or HMAC-SHA512")
    try:
        digits = int(length.get("Length", "6")) if length is not None else 6
        period = int(key.findtext("p:Data/p:TimeInterval/p:PlainValue", namespaces=NS) or "30")
    except ValueError:
        raise _Refused("ResponseFormat Length and TimeInterval must be numbers") from None
    issuer = (key.findtext("p:Issuer", namespaces=NS) or "").strip()
    return TotpRecord(username=username, secret=value, name=issuer[:64] or "PSKC token",
                      params=TotpParams(digits=digits, period=period, algorithm=_SUITES[suite]))


def parse_pskc(text: str, source: str, secret_key: bytes | None) -> list[UserRecord]:
    if "<!DOCTYPE" in text.upper():
        raise BadImportFile([f"{source}: a DOCTYPE is not allowed in a PSKC file"])
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise BadImportFile([f"{source}: not XML: {exc}"]) from None
    if root.tag != f"{{{NS['p']}}}KeyContainer":
        raise BadImportFile([f"{source}: not a PSKC KeyContainer"])
    try:
        mac = _mac_key(root, secret_key)
    except _Refused as exc:
        raise BadImportFile([f"{source}: {exc}"]) from None
    records, problems = [], []
    for package in root.findall("p:KeyPackage", NS):
        for key in package.findall("p:Key", NS):
            try:
                record = _totp(key, package, secret_key, mac)
            except _Refused as exc:
                problems.append(f"{source}: key {key.get('Id', '?')!r}: {exc}")
            else:
                records.append(UserRecord(username=record.username, totp=record))
    if problems:
        raise BadImportFile(problems)
    if not records:
        raise BadImportFile([f"{source}: no keys"])
    return records


_ALGORITHM_OF = {HashAlgorithm.SHA1: "HMAC-SHA1", HashAlgorithm.SHA256: "HMAC-SHA256",
                 HashAlgorithm.SHA512: "HMAC-SHA512"}
#: The writer's cipher: AES-128-CBC (RFC 6030's mandatory one), so a 16-byte pre-shared key.
EXPORT_KEY_BYTES = 16


def _encrypt(key: bytes, plain: bytes) -> bytes:
    iv = secrets.token_bytes(16)
    padder = padding.PKCS7(128).padder()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return iv + encryptor.update(padder.update(plain) + padder.finalize()) + encryptor.finalize()


def _encrypted(parent: ET.Element, tag: str, key: bytes, plain: bytes) -> bytes:
    element = ET.SubElement(parent, tag)
    ET.SubElement(element, f"{{{NS['xenc']}}}EncryptionMethod",
                  Algorithm="http://www.w3.org/2001/04/xmlenc#aes128-cbc")
    data = _encrypt(key, plain)
    cipher = ET.SubElement(ET.SubElement(element, f"{{{NS['xenc']}}}CipherData"), f"{{{NS['xenc']}}}CipherValue")
    cipher.text = base64.b64encode(data).decode()
    return data


def write_pskc(records: Iterable[TotpRecord], key: bytes, *, key_name: str = "mfad export") -> str:
    """A PSKC container of ``records`` encrypted under the pre-shared ``key`` (16 bytes)."""
    if len(key) != EXPORT_KEY_BYTES:
        raise ValueError(f"the pre-shared key must be {EXPORT_KEY_BYTES} bytes (AES-128)")
    p = f"{{{NS['p']}}}"
    ET.register_namespace("", NS["p"])
    ET.register_namespace("xenc", NS["xenc"])
    ET.register_namespace("ds", "http://www.w3.org/2000/09/xmldsig#")
    root = ET.Element(f"{p}KeyContainer", Version="1.0")
    name = ET.SubElement(ET.SubElement(root, f"{p}EncryptionKey"), "{http://www.w3.org/2000/09/xmldsig#}KeyName")
    name.text = key_name
    mac_key = secrets.token_bytes(20)
    method = ET.SubElement(root, f"{p}MACMethod", Algorithm="http://www.w3.org/2000/09/xmldsig#hmac-sha1")
    _encrypted(method, f"{p}MACKey", key, mac_key)
    for i, record in enumerate(records, start=1):
        package = ET.SubElement(root, f"{p}KeyPackage")
        element = ET.SubElement(package, f"{p}Key", Id=str(i), Algorithm=_TOTP[0])
        ET.SubElement(element, f"{p}Issuer").text = record.name
        parameters = ET.SubElement(element, f"{p}AlgorithmParameters")
        ET.SubElement(parameters, f"{p}Suite").text = _ALGORITHM_OF[record.params.algorithm]
        ET.SubElement(parameters, f"{p}ResponseFormat", Length=str(record.params.digits), Encoding="DECIMAL")
        data = ET.SubElement(element, f"{p}Data")
        secret = ET.SubElement(data, f"{p}Secret")
        sealed = _encrypted(secret, f"{p}EncryptedValue", key, record.secret)
        ET.SubElement(secret, f"{p}ValueMAC").text = base64.b64encode(
            hmac.new(mac_key, sealed, hashlib.sha1).digest()).decode()
        interval = ET.SubElement(data, f"{p}TimeInterval")
        ET.SubElement(interval, f"{p}PlainValue").text = str(record.params.period)
        ET.SubElement(element, f"{p}UserId").text = record.username
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
