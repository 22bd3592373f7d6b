"""The `Cookie` request header (RFC 6265 §5.4), parsed in linear time.

Starlette's `Request.cookies` unquotes values with `http.cookies._unquote`,
which is quadratic in the number of backslashes on Python releases without
the fix for CVE-2024-7592 (3.11.7 among them): a 16 KiB header of `\\"`
pairs held a worker for a quarter of a second. FastAPI reads
`request.cookies` on every request (to resolve cookie parameters), so no
route avoids it: `install` makes Starlette use `parse_cookie_header`, which
unquotes with one regular-expression pass per value, as Python's fix does.
The result is otherwise the same as Starlette's parser (split on `;`, the
first `=` separates name and value, surrounding spaces dropped,
double-quoted values unquoted, the last duplicate wins).
"""

from __future__ import annotations

import re

import starlette.requests

# One pass: `\ooo` (octal) or `\x` (any other character, taken literally), as Python's fix does.
_ESCAPE = re.compile(r"\\(?:([0-3][0-7][0-7])|(.))")


def _unescape(match: re.Match[str]) -> str:
    octal, char = match.group(1), match.group(2)
    return chr(int(octal, 8)) if octal else char


def unquote(value: str) -> str:
    """A cookie value without its double quotes and backslash escapes, if it is quoted."""
    if len(value) < 2 or value[0] != '"' or value[-1] != '"':
        return value
    return _ESCAPE.sub(_unescape, value[1:-1])


def parse_cookie_header(header: str) -> dict[str, str]:
    """Name → value for one `Cookie` header, in time linear in its length."""
    cookies: dict[str, str] = {}
    for chunk in header.split(";"):
        name, sep, value = chunk.partition("=")
        if not sep:
            # A nameless cookie, as browsers send it (Mozilla bug 169091).
            name, value = "", chunk
        name, value = name.strip(), value.strip()
        if name or value:
            cookies[name] = unquote(value)
    return cookies


def install() -> None:
    """Make every `Request.cookies` in this process use `parse_cookie_header`."""
    # Request.cookies looks the name up in its module at each call; fail loudly if that changes.
    assert callable(getattr(starlette.requests, "cookie_parser", None)), "starlette changed"
    starlette.requests.cookie_parser = parse_cookie_header
