"""mfad's self-service portal: the sign-in page and the Security Information page.

A server-rendered web application (Starlette, Jinja2 templates, gettext catalogs)
that talks to mfad only over gRPC, through :mod:`mfad_client`, with a caller token
of role ``portal`` and the signed-in user's session token. It runs inside
``mfad serve`` (``[portal] enabled = true``, the default) or alone as
``mfad-portal --config portal.toml``. See docs/portal.md.
"""

from mfad_portal.app import create_app
from mfad_portal.service import PortalService

__all__ = ["PortalService", "create_app"]
