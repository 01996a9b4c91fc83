"""A real OpenLDAP ``slapd`` for the tests: a temporary database, a test CA, ldap:// with
StartTLS and ldaps://, the memberOf overlay, and the Microsoft user schema so that
``userAccountControl`` exists as in Active Directory.

``Slapd.start(tmp_path)`` runs it on free loopback ports and loads ``people`` (a fixed set
of users and groups, see ``PEOPLE``); ``stop()`` ends it. Used by the directory tests and
by ``bench/directory_timing.py``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))
from grpc_doubles import CertificateAuthority  # noqa: E402
from peer_tools import find_tool, stop_peer  # noqa: E402
from loopback import free_port  # noqa: F401  (also for this module's importers)

SLAPD = "/usr/sbin/slapd"
SUFFIX = "dc=example,dc=org"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PASSWORD = "root-secret-for-tests"
SERVICE_DN = f"cn=mfad,ou=services,{SUFFIX}"
SERVICE_PASSWORD = "service-bind-secret"
PEOPLE_BASE = f"ou=people,{SUFFIX}"
GROUPS_BASE = f"ou=groups,{SUFFIX}"


@dataclass(frozen=True, slots=True)
class Person:
    uid: str
    password: str
    name: str
    mail: str
    groups: tuple[str, ...] = ()
    #: AD's userAccountControl: 512 a normal account, 514 (512|2) disabled.
    account_control: int = 512

    @property
    def dn(self) -> str:
        return f"uid={self.uid},{PEOPLE_BASE}"


PEOPLE = (
    Person("alice", "alice-directory-pw", "Alice Liddell", "alice@example.org", ("staff",)),
    Person("bob", "bob-directory-pw", "Bob Builder", "bob@example.org", ("vpn-contractors",)),
    Person("carol", "carol-directory-pw", "Carol Disabled", "carol@example.org", ("staff",), account_control=514),
    Person("dave", "dave-directory-pw", "Dave Staff", "dave@example.org", ("staff", "vpn-contractors")),
)


def available() -> bool:
    return os.path.exists(SLAPD) and find_tool("ldapadd") is not None


def _ldif(people: tuple[Person, ...]) -> str:
    out = [f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n"]
    for ou in ("people", "groups", "services"):
        out.append(f"dn: ou={ou},{SUFFIX}\nobjectClass: organizationalUnit\nou: {ou}\n")
    out.append(f"dn: {SERVICE_DN}\nobjectClass: simpleSecurityObject\nobjectClass: organizationalRole\n"
               f"cn: mfad\nuserPassword: {SERVICE_PASSWORD}\n")
    for p in people:
        given, _, family = p.name.partition(" ")
        out.append(f"dn: {p.dn}\nobjectClass: inetOrgPerson\nobjectClass: mfadTestAdAccount\nuid: {p.uid}\ncn: {p.name}\n"
                   f"sn: {family or given}\ndisplayName: {p.name}\nmail: {p.mail}\n"
                   f"sAMAccountName: {p.uid}\nuserAccountControl: {p.account_control}\n"
                   f"userPassword: {p.password}\n")
    groups = sorted({g for p in people for g in p.groups})
    for g in groups:
        members = "".join(f"member: {p.dn}\n" for p in people if g in p.groups)
        out.append(f"dn: cn={g},{GROUPS_BASE}\nobjectClass: groupOfNames\ncn: {g}\n{members}")
    return "\n".join(out)


# The two Active Directory attributes the tests need, with AD's own OIDs, on an auxiliary
# class (Debian's msuser.schema makes "user" structural, which excludes inetOrgPerson).
_AD_SCHEMA = """
attributetype ( 1.2.840.113556.1.4.8 NAME 'userAccountControl'
  EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
attributetype ( 1.2.840.113556.1.4.221 NAME 'sAMAccountName'
  EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
objectclass ( 1.3.6.1.4.1.99999.1.1 NAME 'mfadTestAdAccount' AUXILIARY
  MAY ( userAccountControl $ sAMAccountName ) )
"""


class Slapd:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.ca = CertificateAuthority("mfad directory test CA")
        self.ca_file = root / "ca.crt"
        self.port = free_port()
        self.ldaps_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def ldap_url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.ldaps_port}"

    @classmethod
    def start(cls, root: Path, people: tuple[Person, ...] = PEOPLE) -> Slapd:
        root.mkdir(parents=True, exist_ok=True)
        self = cls(root)
        self._configure()
        self._run()
        self.ldapadd(_ldif(people))
        return self

    def _configure(self) -> None:
        (self.root / "db").mkdir()
        self.ca_file.write_bytes(self.ca.pem)
        cert, key = self.ca.issue("localhost", server=True).write(self.root, "server")
        schema = "/etc/ldap/schema"
        conf = f"""
include {schema}/core.schema
include {schema}/cosine.schema
include {schema}/inetorgperson.schema
include {schema}/nis.schema
include {self.root}/ad.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
pidfile {self.root}/slapd.pid
argsfile {self.root}/slapd.args
TLSCACertificateFile {self.ca_file}
TLSCertificateFile {cert}
TLSCertificateKeyFile {key}
database mdb
maxsize 16777216
suffix "{SUFFIX}"
rootdn "{ROOT_DN}"
rootpw {ROOT_PASSWORD}
directory {self.root}/db
index uid,sAMAccountName,member eq
overlay memberof
access to attrs=userPassword by anonymous auth by self write by * none
access to * by dn.exact="{SERVICE_DN}" read by self read by * none
"""
        (self.root / "ad.schema").write_text(_AD_SCHEMA)
        (self.root / "slapd.conf").write_text(conf)

    def _run(self) -> None:
        urls = f"ldap://127.0.0.1:{self.port}/ ldaps://127.0.0.1:{self.ldaps_port}/"
        # -d 0: stay in the foreground (the test owns the process) and log nothing.
        with open(self.root / "slapd.log", "wb") as log:
            self.proc = subprocess.Popen([SLAPD, "-f", str(self.root / "slapd.conf"), "-h", urls, "-d", "0"],
                                         stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"slapd exited: {(self.root / 'slapd.log').read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2), \
                        socket.create_connection(("127.0.0.1", self.ldaps_port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("slapd did not listen within 15 s")

    def ldapadd(self, ldif: str) -> None:
        self._tool("ldapadd", ldif)

    def ldapmodify(self, ldif: str) -> None:
        self._tool("ldapmodify", ldif)

    def _tool(self, tool: str, ldif: str) -> None:
        subprocess.run([tool, "-x", "-H", self.ldap_url, "-D", ROOT_DN, "-w", ROOT_PASSWORD],
                       input=ldif.encode(), check=True, capture_output=True, timeout=20)

    def set_account_control(self, uid: str, value: int) -> None:
        self.ldapmodify(f"dn: uid={uid},{PEOPLE_BASE}\nchangetype: modify\nreplace: userAccountControl\n"
                        f"userAccountControl: {value}\n")

    def delete(self, uid: str) -> None:
        subprocess.run(["ldapdelete", "-x", "-H", self.ldap_url, "-D", ROOT_DN, "-w", ROOT_PASSWORD,
                        f"uid={uid},{PEOPLE_BASE}"], check=True, capture_output=True, timeout=20)

    def stop(self) -> None:
        if self.proc is not None:
            stop_peer(self.proc)
