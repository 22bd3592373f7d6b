// Admin: API keys (create with scopes, the secret shown once with a copy button, revoke).

import { call } from "../api.js";
import {
  busy, checkbox, confirmDialog, copyText, describeError, field, h, messages, replace, table, time,
} from "../dom.js";
import { pager } from "./pager.js";

export const SCOPES = [
  ["users:read", "Read users"],
  ["users:write", "Create and change users"],
  ["sessions:revoke", "Revoke sessions"],
  ["audit:read", "Read the audit log"],
  ["ops:read", "Read metrics and operations"],
  ["api_keys:manage", "Manage API keys"],
];

export function render(main, ctx) {
  const msg = messages();
  const reveal = h("div", {});
  const list = h("div", {});
  const paging = pager(load);
  replace(main,
    h("div", {class: "page-head"}, h("h1", {}, "API keys"),
      h("p", {class: "lead"}, "Keys let services call Gatehouse without a user session. A key acts with its scopes, and never with more than its creator holds.")),
    createSection(ctx, reveal, () => paging.reset()),
    reveal,
    h("section", {"aria-labelledby": "keys-h"}, h("h2", {id: "keys-h"}, "Keys"), msg.el, list, paging.el));

  async function load(cursor) {
    const params = new URLSearchParams({limit: "50"});
    if (cursor) params.set("cursor", cursor);
    try {
      const page = await call("GET", `/api/v1/admin/api-keys?${params}`);
      const rows = page.items.map((key) => h("tr", {},
        h("td", {}, h("span", {class: "strong"}, key.name)),
        h("td", {}, h("code", {}, `${key.prefix}…`)),
        h("td", {}, h("ul", {class: "tags"}, (key.scopes || []).map((s) => h("li", {}, s)))),
        h("td", {}, time(key.created_at)),
        h("td", {}, key.expires_at ? time(key.expires_at) : "never"),
        h("td", {}, time(key.last_used_at)),
        h("td", {}, h("button", {
          type: "button", class: "danger small", "aria-label": `Revoke key ${key.name}`,
          onclick: (event) => revoke(event.currentTarget, key),
        }, "Revoke"))));
      replace(list, rows.length
        ? table("API keys", ["Name", "Key", "Scopes", "Created", "Expires", "Last used", ""], rows)
        : h("p", {class: "empty"}, "No API keys yet."));
      return page.next_cursor;
    } catch (error) {
      msg.error(describeError(error));
      return null;
    }
  }

  async function revoke(button, key) {
    const ok = await confirmDialog({
      title: `Revoke ${key.name}?`,
      text: "Every service using this key is refused from now on. This cannot be undone.",
      confirm: "Revoke key",
    });
    if (!ok) return;
    await busy(button, async () => {
      try {
        await call("DELETE", `/api/v1/admin/api-keys/${encodeURIComponent(key.id)}`);
        msg.notice(`The key ${key.name} is revoked.`);
        await paging.reset();
      } catch (error) {
        msg.error(describeError(error));
      }
    });
  }

  paging.reset();
}

function createSection(ctx, reveal, created) {
  const msg = messages();
  const name = h("input", {type: "text", name: "name", required: true, maxlength: "200", autocomplete: "off"});
  const scopes = SCOPES.map(([scope, label]) => ({
    scope, ...checkbox(`${label} (${scope})`, {name: "scopes", value: scope, disabled: !ctx.state.permissions.has(scope)}),
  }));
  const expires = h("input", {type: "date", name: "expires"});
  const signed = checkbox("Require signed requests (an HMAC signing secret is issued with the key)", {name: "require_signature"});
  const submit = h("button", {type: "submit", class: "primary"}, "Create key");
  const form = h("form", {class: "card", novalidate: true},
    field("Name", name, "What the key is for, e.g. \"billing service\"."),
    h("fieldset", {class: "checks"}, h("legend", {}, "Scopes"), scopes.map((s) => s.el)),
    field("Expires on (optional)", expires),
    signed.el,
    msg.el,
    h("div", {class: "actions"}, submit));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    msg.clear();
    const chosen = scopes.filter((s) => s.input.checked).map((s) => s.scope);
    if (!name.value.trim()) {
      msg.error("Give the key a name.");
      name.focus();
      return;
    }
    if (!chosen.length) {
      msg.error("Choose at least one scope.");
      return;
    }
    const body = {name: name.value.trim(), scopes: chosen, require_signature: signed.input.checked};
    if (expires.value) body.expires_at = new Date(`${expires.value}T23:59:59Z`).toISOString();
    busy(submit, async () => {
      try {
        const key = await call("POST", "/api/v1/admin/api-keys", body);
        form.reset();
        showOnce(reveal, key);
        await created();
      } catch (error) {
        msg.error(describeError(error));
      }
    });
  });
  return h("section", {"aria-labelledby": "create-key-h"}, h("h2", {id: "create-key-h"}, "Create an API key"), form);
}

/** The key (and signing secret) exist only in this answer: show them with copy buttons, once. */
function showOnce(reveal, key) {
  const secret = (label, value) => {
    const input = h("input", {type: "text", readonly: true, value, class: "secret", spellcheck: "false"});
    const note = h("span", {class: "copied", "aria-live": "polite"});
    const copy = h("button", {type: "button", class: "secondary small", "aria-label": `Copy ${label.toLowerCase()}`},
      "Copy");
    copy.addEventListener("click", async () => {
      note.textContent = await copyText(value, input) ? "Copied" : "Select the text and copy it";
    });
    return field(label, input, null).appendChild(h("div", {class: "copy-row"}, copy, note)).parentElement;
  };
  const done = h("button", {type: "button", class: "primary"}, "I have saved it");
  done.addEventListener("click", () => replace(reveal));
  replace(reveal, h("section", {class: "card reveal", "aria-labelledby": "reveal-h"},
    h("h2", {id: "reveal-h"}, `Key "${key.name}" created`),
    h("div", {role: "status", class: "message notice"},
      "Copy the key now: it is shown only once and cannot be recovered. Create a new key if it is lost."),
    secret("API key", key.key),
    key.signing_secret ? secret("Signing secret", key.signing_secret) : null,
    h("div", {class: "actions"}, done)));
  done.focus();
}
