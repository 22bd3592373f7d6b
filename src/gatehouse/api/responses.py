"""`JSONResponse` rendered by orjson: the answers the routes build themselves.

Starlette's `JSONResponse` encodes with the standard library (`ensure_ascii=False`,
compact separators): 15 µs for a token answer, about 8 % of a rotating refresh with
the JWT claims and the access-log line (bench/RESULTS.md, 2026-12-03 night). orjson
writes the same compact UTF-8 in under 1 µs. Keys that are not strings are written
as strings, as `json.dumps` does.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse as _StarletteJSONResponse

__all__ = ["JSONResponse", "json_bytes"]


def json_bytes(content: Any) -> bytes:
    """Compact UTF-8 JSON, as the answers carry it."""
    return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


class JSONResponse(_StarletteJSONResponse):
    """Starlette's `JSONResponse`, encoded by orjson."""

    def render(self, content: Any) -> bytes:
        return json_bytes(content)
