"""A real FreeRADIUS for the tests that run one (a proxy in front of mfad, an upstream
first factor): where the binary is, and a radiusd.conf that keeps everything in the test's
own directory."""

from __future__ import annotations

from pathlib import Path

from peer_tools import find_tool
from loopback import free_udp_port  # noqa: F401  (also for this module's importers)

FREERADIUS = find_tool("freeradius")

_PREAMBLE = """\
prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = /var
sbindir = /usr/sbin
logdir = {dir}
raddbdir = {dir}
radacctdir = {dir}
name = freeradius
confdir = {dir}
modconfdir = {dir}
run_dir = {dir}
db_dir = {dir}
libdir = /usr/lib/freeradius
pidfile = {dir}/freeradius.pid
max_request_time = 30
cleanup_delay = {cleanup_delay}
max_requests = 1024
hostname_lookups = no
log {{
  destination = files
  file = {dir}/radius.log
}}
security {{
  max_attributes = 200
  reject_delay = 0
  status_server = yes
}}
thread pool {{
  start_servers = 2
  max_servers = 4
  min_spare_servers = 1
  max_spare_servers = 2
}}
"""


def radiusd_conf(directory: Path, body: str, *, cleanup_delay: int = 0) -> str:
    """radiusd.conf for a server whose files (log, pid) all live in ``directory``, then
    ``body``: its clients, modules, home servers and virtual server."""
    return _PREAMBLE.format(dir=directory, cleanup_delay=cleanup_delay) + body

