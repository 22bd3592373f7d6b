"""MkDocs hook: the API reference page is rendered from the app's own OpenAPI document.

The document is built in-process from `create_app` (no server, no network, no
checked-in `openapi.json` to go stale) and turned into Markdown by
essentials-openapi, the renderer behind the neoteroi-mkdocs `[OAD(...)]` tag.
Only the page holding the marker is touched.
"""

from __future__ import annotations

import secrets
from typing import Any

MARKER = "<!-- openapi-reference -->"


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document of an app with default settings and throwaway secrets."""
    from gatehouse.app import create_app
    from gatehouse.settings import load_settings

    settings = load_settings(JWT_SECRET=secrets.token_urlsafe(48),
                             ENCRYPTION_KEY=secrets.token_urlsafe(24)[:32],
                             DATABASE_URL="sqlite:///:memory:")
    return create_app(settings).openapi()


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    if MARKER not in markdown:
        return markdown
    from openapidocs.mk.v3 import OpenAPIV3DocumentationHandler

    rendered = OpenAPIV3DocumentationHandler(openapi_document(), style="MKDOCS").write()
    return markdown.replace(MARKER, rendered)
