// Cursor paging ("next_cursor", API.md §1) with a way back: the cursors seen so far.

import { h } from "../dom.js";

/** `load(cursor)` draws one page and resolves with its next_cursor (or null). */
export function pager(load) {
  const stack = []; // cursors of the pages before this one
  let current = null;
  let next = null;
  const prev = h("button", {type: "button", class: "secondary small"}, "Previous page");
  const more = h("button", {type: "button", class: "secondary small"}, "Next page");
  const where = h("span", {class: "muted"});
  const el = h("nav", {class: "pager", "aria-label": "Pages"}, prev, where, more);

  function update() {
    prev.disabled = stack.length === 0;
    more.disabled = !next;
    where.textContent = `Page ${stack.length + 1}`;
    el.hidden = stack.length === 0 && !next;
  }

  async function go(cursor) {
    prev.disabled = more.disabled = true;
    current = cursor;
    next = await load(cursor);
    update();
  }

  prev.addEventListener("click", () => go(stack.pop() ?? null));
  more.addEventListener("click", () => { stack.push(current); go(next); });
  return {
    el,
    get cursor() { return current; },
    reset() { stack.length = 0; return go(null); },
  };
}
