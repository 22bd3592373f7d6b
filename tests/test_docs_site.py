"""The docs site builds with `mkdocs build --strict` (broken links, anchors and nav entries fail
it), holds every page of docs/, the console screenshot, the Mermaid flows, and an API reference
with every operation of the app's OpenAPI document."""

from __future__ import annotations

import html
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests._docs_blocks import BIN, DOCS

ROOT = DOCS.parent


def _nav_pages(entries: list[object]) -> set[str]:
    pages: set[str] = set()
    for entry in entries:
        for value in (entry.values() if isinstance(entry, dict) else [entry]):
            pages |= _nav_pages(value) if isinstance(value, list) else {str(value)}
    return pages


class _Loader(yaml.SafeLoader):
    """mkdocs.yml names a Python function (`!!python/name:`); only its text matters here."""


_Loader.add_multi_constructor("tag:yaml.org,2002:python/name:", lambda *_: None)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run([str(BIN / "mkdocs"), "build", "--strict", "--site-dir", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def test_every_page_of_docs_is_in_the_nav_and_built(site: Path) -> None:
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=_Loader)  # noqa: S506
    nav = _nav_pages(config["nav"])
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")
             if "node_modules" not in p.parts}
    assert pages - nav == set(), "pages missing from mkdocs.yml's nav"
    for page in nav:
        folder = "" if page == "index.md" else page.removesuffix(".md")
        built = site / folder / "index.html"
        assert built.is_file(), page


def test_console_screenshot_and_mermaid_flows_are_in_the_site(site: Path) -> None:
    assert (site / "img" / "console.png").stat().st_size > 10_000
    assert 'src="img/console.png"' in (site / "index.html").read_text()
    flows = (site / "flows" / "index.html").read_text()
    # pymdownx's mermaid fence: Material renders these <pre class="mermaid"> blocks as diagrams,
    # with the Mermaid of node_modules that the pages with diagrams (only those) load.
    assert len(re.findall(r'<pre class="mermaid"><code>sequenceDiagram', flows)) >= 7
    assert (site / "js" / "mermaid.min.js").stat().st_size > 1_000_000
    assert '<script src="../js/mermaid.min.js"></script>' in flows
    assert "mermaid.min.js" not in (site / "index.html").read_text()


def test_api_reference_lists_every_operation_of_the_openapi_document(site: Path) -> None:
    from docs.hooks.openapi_reference import openapi_document

    reference = html.unescape((site / "reference" / "index.html").read_text())
    # Headings read `<span class="http-get">GET</span> /api/v1/users/<span ...>{id}</span>`.
    headings = {re.sub(r"<[^>]+>", "", heading) for heading in re.findall(
        r'<span class="http-[a-z]+">([A-Z]+</span> [^<]*(?:<span class="route-param">'
        r'[^<]*</span>[^<]*)*)<a class="headerlink"', reference)}
    document = openapi_document()
    operations = {f"{method.upper()} {path}" for path, methods in document["paths"].items()
                  for method in methods}
    assert operations - headings == set()
    assert "application/problem+json" in reference
