"""MkDocs hook: diagrams render without the network.

Material for MkDocs draws ```mermaid blocks with Mermaid, which it fetches from unpkg.com
unless a global `mermaid` is already defined. This hook ships the copy of the npm dev
dependency (node_modules/mermaid, installed by `npm ci`) as `js/mermaid.min.js` and loads it
only on pages that have a diagram (it is large). Without node_modules the theme's CDN
fallback stays in place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files
from mkdocs.utils import get_relative_url

SOURCE = Path(__file__).resolve().parents[2] / "node_modules/mermaid/dist/mermaid.min.js"
TARGET = "js/mermaid.min.js"


def on_files(files: Files, config: Any, **_: Any) -> Files:
    if SOURCE.is_file():
        files.append(File.generated(config, TARGET, abs_src_path=str(SOURCE)))
    return files


def on_post_page(output: str, page: Any, **_: Any) -> str:
    if not SOURCE.is_file() or 'class="mermaid"' not in output:
        return output
    script = f'<script src="{get_relative_url(TARGET, page.url)}"></script>'
    return output.replace("</body>", f"{script}\n</body>", 1)
