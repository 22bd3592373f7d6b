"""Every Mermaid diagram of docs/ renders: each ```mermaid block is parsed and drawn by Mermaid
(the npm package of package.json) in Chromium, as the docs site's readers' browsers do. A typo
in a diagram (a `;` in a message ends the statement) otherwise shows only as an error box on the
published page."""

from __future__ import annotations

from playwright.sync_api import Browser

from tests._docs_blocks import DOCS, fenced_blocks

MERMAID = DOCS.parent / "node_modules" / "mermaid" / "dist" / "mermaid.min.js"
RENDER = """async ([id, text]) => {
  try {
    const { svg } = await mermaid.render(id, text);
    return svg.includes("<svg") ? "ok" : "no svg";
  } catch (error) {
    return String(error.message || error);
  }
}"""


def test_every_mermaid_block_of_the_docs_renders(chromium: Browser) -> None:
    diagrams = [(page.name, n, block) for page in sorted(DOCS.glob("*.md"))
                for n, block in enumerate(fenced_blocks(page, "mermaid"))]
    assert len([d for d in diagrams if d[0] == "flows.md"]) >= 7
    page = chromium.new_page()
    try:
        page.set_content("<!doctype html><html><body></body></html>")
        page.add_script_tag(path=str(MERMAID))
        page.evaluate("mermaid.initialize({ startOnLoad: false })")
        results = {f"{name} #{n + 1}": page.evaluate(RENDER, [f"diagram{i}", block])
                   for i, (name, n, block) in enumerate(diagrams)}
    finally:
        page.close()
    assert {where: result for where, result in results.items() if result != "ok"} == {}
