// A small DOM helper: elements from plain data, never from HTML strings (so nothing a
// server or user typed can become markup), plus the few widgets every page shares.

/**
 * Create an element. `props`: `class`, `text`, `on<event>` handlers, `dataset`, booleans
 * (`disabled`, `checked`, `required`, ...) and any other attribute by name.
 * Children: nodes, strings (as text), or arrays of those; null/false are skipped.
 * @example h("button", {type: "button", onclick: save}, "Save")
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "value") el.value = value;
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** Replace every child of `el` with `children`. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let uid = 0;
/** A unique id for label/input pairs. */
export function nextId(prefix = "f") {
  uid += 1;
  return `${prefix}-${uid}`;
}

/** A labelled form field: `<label>` + `<input>` (or the given control), with an optional hint. */
export function field(label, input, hint) {
  const id = input.id || nextId();
  input.id = id;
  const hintEl = hint ? h("p", {class: "hint", id: `${id}-hint`}, hint) : null;
  if (hintEl) input.setAttribute("aria-describedby", hintEl.id);
  return h("div", {class: "field"}, h("label", {for: id}, label), input, hintEl);
}

/** A checkbox with its label after it. */
export function checkbox(label, props = {}) {
  const input = h("input", {type: "checkbox", id: nextId("c"), ...props});
  return {input, el: h("div", {class: "check"}, input, h("label", {for: input.id}, label))};
}

/**
 * A message area: `role="alert"` for errors, `role="status"` for notices. Both stay in the
 * page (empty) so assistive technology announces what is written into them later.
 */
export function messages() {
  const alert = h("div", {role: "alert", class: "message error", hidden: true});
  const status = h("div", {role: "status", class: "message notice", hidden: true});
  return {
    el: h("div", {class: "messages"}, alert, status),
    error(text) { status.hidden = true; status.textContent = ""; show(alert, text); },
    notice(text) { alert.hidden = true; alert.textContent = ""; show(status, text); },
    clear() { for (const el of [alert, status]) { el.hidden = true; el.textContent = ""; } },
  };
}

function show(el, content) {
  replace(el, content);
  el.hidden = false;
}

/** What to tell a person about a failed call: the server's detail, plus the request id. */
export function describeError(error) {
  if (!error) return "Something went wrong.";
  if (error.status === 0 || error.code === "network_error" || error.code === "timeout") {
    return "Gatehouse could not be reached. Check your connection and try again.";
  }
  if (error.code === "rate_limited" || error.code === "login_throttled") {
    return `Too many attempts. Try again in ${waitText(error.retryAfter)}.`;
  }
  if (error.code === "forbidden") {
    return `You do not have permission to do this. ${error.detail || ""}`.trim();
  }
  if (error.code === "service_unavailable") {
    return `Gatehouse is temporarily unavailable. Try again in ${waitText(error.retryAfter)}.`;
  }
  const detail = error.detail || error.message || "Something went wrong.";
  return error.requestId ? `${detail} (request id ${error.requestId})` : detail;
}

/** "1 second", "12 seconds". */
export function waitText(seconds) {
  const n = Math.max(1, Math.ceil(Number(seconds) || 1));
  if (n === 1) return "1 second";
  return n >= 120 ? `${n} seconds (about ${Math.round(n / 60)} minutes)` : `${n} seconds`;
}

/** A button that disables itself while `action` runs (no double submits). */
export async function busy(button, action) {
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    return await action();
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}

/** A date and time in the reader's locale, with the exact UTC value as a tooltip. */
export function time(iso) {
  if (!iso) return h("span", {class: "muted"}, "never");
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return h("span", {}, String(iso));
  return h("time", {datetime: iso, title: iso}, date.toLocaleString(undefined, {
    year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
  }));
}

/** A calendar date in the reader's locale (for things like "member since"). */
export function date(iso) {
  const value = new Date(iso);
  if (!iso || Number.isNaN(value.getTime())) return h("span", {class: "muted"}, "unknown");
  return h("time", {datetime: iso, title: iso},
    value.toLocaleDateString(undefined, {year: "numeric", month: "long", day: "numeric"}));
}

/**
 * A modal dialog (native `<dialog>`: role "dialog", focus kept inside, Escape closes).
 * `build(close)` returns the body; resolves with what `close(value)` was given.
 */
export function openDialog(title, build) {
  return new Promise((resolve) => {
    const heading = h("h2", {id: nextId("dlg")}, title);
    const dialog = h("dialog", {"aria-labelledby": heading.id, class: "dialog"});
    let result;
    const close = (value) => { result = value; dialog.close(); };
    dialog.addEventListener("close", () => { dialog.remove(); resolve(result); });
    replace(dialog, heading, build(close));
    document.body.append(dialog);
    dialog.showModal();
  });
}

/** Ask before something that cannot be undone; resolves true when confirmed. */
export function confirmDialog({title, text, confirm, danger = true}) {
  return openDialog(title, (close) => h("div", {},
    h("p", {}, text),
    h("div", {class: "actions"},
      h("button", {type: "button", class: "secondary", onclick: () => close(false)}, "Cancel"),
      h("button", {type: "button", class: danger ? "danger" : "primary", onclick: () => close(true)},
        confirm))));
}

/**
 * A table in a scrollable, keyboard-focusable region. Each cell carries its column's name
 * (`data-label`), so on a phone the stylesheet can stack a row into a labelled card.
 */
export function table(caption, headers, rows) {
  for (const row of rows) {
    [...row.children].forEach((cell, i) => {
      if (headers[i]) cell.dataset.label = headers[i];
      else cell.classList.add("cell-actions");
    });
  }
  return h("div", {class: "table-wrap", role: "region", "aria-label": caption, tabindex: "0"},
    h("table", {},
      h("caption", {class: "visually-hidden"}, caption),
      h("thead", {}, h("tr", {}, headers.map((name) => h("th", {scope: "col"}, name)))),
      h("tbody", {}, rows)));
}

/** Copy text to the clipboard; resolves true when it worked. */
export async function copyText(text, fallbackInput) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    if (fallbackInput) {
      fallbackInput.focus();
      fallbackInput.select();
      try { return document.execCommand("copy"); } catch { return false; }
    }
    return false;
  }
}
