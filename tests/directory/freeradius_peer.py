"""A real FreeRADIUS as the upstream first factor: PAP against its users file.

``await start_upstream(tmp_path, require_message_authenticator=...)`` → an ``Upstream``
with its port and secret; ``stop()`` ends it.
"""

from __future__ import annotations

import asyncio
import subprocess
from dataclasses import dataclass
from pathlib import Path

from freeradius_conf import FREERADIUS, free_udp_port, radiusd_conf
from peer_tools import stop_peer

SECRET = "upstream-shared-secret-0123"

#: name → (password, reply attributes in users-file syntax)
USERS = {
    "erin": ("erin-upstream-pw", 'Class := "vpn-contractors", Filter-Id := "vpn-acl", Reply-Message := "hello"'),
    "frank": ("frank-upstream-pw", 'Class := "staff"'),
    # FreeRADIUS before 3.2.5 signs a reply only when told to (its BlastRADIUS advice).
    "grace": ("grace-upstream-pw", 'Class := "staff", Message-Authenticator := 0x00'),
}

CONF = """\
client mfad {{
  ipaddr = 127.0.0.1
  secret = {secret}
  require_message_authenticator = {require_ma}
}}
modules {{
  files {{
    filename = {dir}/users
  }}
  pap {{
  }}
}}
server default {{
  listen {{
    type = auth
    ipaddr = 127.0.0.1
    port = {port}
  }}
  authorize {{
    files
    pap
  }}
  authenticate {{
    Auth-Type PAP {{
      pap
    }}
  }}
{post_auth}}}
"""

#: What docs/directory.md tells operators of FreeRADIUS before 3.2.5 to add so that every
#: reply (accepts and rejects) is signed.
SIGN_REPLIES = """\
  post-auth {{
    update reply {{
      &Message-Authenticator := 0x00
    }}
    Post-Auth-Type REJECT {{
      update reply {{
        &Message-Authenticator := 0x00
      }}
    }}
  }}
"""


@dataclass
class Upstream:
    port: int
    process: subprocess.Popen[bytes]
    directory: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_peer(self.process)


def _users_file() -> str:
    lines = []
    for name, (password, reply) in USERS.items():
        lines.append(f'{name} Cleartext-Password := "{password}"\n\t{reply}\n')
    return "\n".join(lines)


async def start_upstream(root: Path, *, require_message_authenticator: bool = True,
                         sign_replies: bool = False) -> Upstream:
    assert FREERADIUS is not None
    root.mkdir(parents=True, exist_ok=True)
    port = free_udp_port()
    (root / "users").write_text(_users_file())
    require_ma = "yes" if require_message_authenticator else "no"
    post_auth = SIGN_REPLIES.replace("{{", "{").replace("}}", "}") if sign_replies else ""
    (root / "radiusd.conf").write_text(radiusd_conf(root, CONF.format(dir=root, port=port, secret=SECRET,
                                                                      require_ma=require_ma, post_auth=post_auth)))
    process = subprocess.Popen([FREERADIUS, "-f", "-d", str(root)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.STDOUT)
    upstream = Upstream(port, process, root)
    for _ in range(100):
        if process.poll() is not None:
            break
        if _answers_status(port):
            return upstream
        await asyncio.sleep(0.1)
    upstream.stop()
    log = root / "radius.log"
    raise AssertionError(f"FreeRADIUS did not start: {log.read_text() if log.exists() else ''}")


def _answers_status(port: int) -> bool:
    done = subprocess.run(["radclient", "-q", "-r", "1", "-t", "0.3", f"127.0.0.1:{port}", "status", SECRET],
                          input=b"Message-Authenticator = 0x00\n", capture_output=True, timeout=5)
    return done.returncode == 0
