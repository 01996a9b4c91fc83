"""Languages: English (the texts in the templates and in ``messages``) and Simplified Chinese.

The catalogs are gettext ``.po`` files under ``locale/``, compiled in memory
when the portal starts (Babel), so there is no build step to forget. The
language is chosen from the request's ``Accept-Language``.
"""

from __future__ import annotations

import gettext
import io
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "messages"
DEFAULT = "en"
#: Language tag (for <html lang>) → catalog directory; "en" needs none (the texts are English).
LANGUAGES = {"en": None, "zh-Hans": "zh_Hans"}


def N_(text: str) -> str:
    """Marks a text for the catalogs; it is translated where it is shown."""
    return text


def load_catalog(directory: str) -> gettext.NullTranslations:
    po = LOCALE_DIR / directory / "LC_MESSAGES" / f"{DOMAIN}.po"
    with po.open("rb") as f:
        catalog = read_po(f, locale=directory)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(compiled, domain=DOMAIN)


def load_all() -> dict[str, gettext.NullTranslations]:
    return {tag: gettext.NullTranslations() if d is None else load_catalog(d) for tag, d in LANGUAGES.items()}


def negotiate(accept_language: str) -> str:
    """The best supported language for an Accept-Language header (RFC 9110 §12.5.4)."""
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(accept_language.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        ranked.append((-q, i, tag.strip().lower()))
    for negative_q, _, tag in sorted(ranked):
        if negative_q >= 0:
            break
        if tag == "zh" or tag.startswith(("zh-hans", "zh-cn", "zh-sg")):
            return "zh-Hans"
        if tag == "en" or tag.startswith("en-") or tag == "*":
            return "en"
    return DEFAULT
