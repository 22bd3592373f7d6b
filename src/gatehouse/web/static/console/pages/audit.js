// Admin: the audit log, newest first, filtered by event type and user, with paging.

import { call } from "../api.js";
import { describeError, field, h, messages, replace, table, time } from "../dom.js";
import { pager } from "./pager.js";

export const EVENT_TYPES = [
  "login.success", "login.failure", "login.throttled", "logout", "logout_all",
  "refresh.reuse_detected", "password.changed", "session.revoked", "sessions.revoked_all",
  "user.created", "user.updated", "user.role_changed", "user.disabled", "user.unlocked",
  "users.imported", "api_key.created", "api_key.revoked", "password.reset_requested",
  "password.reset", "email.verified", "mfa.enabled", "mfa.disabled", "mfa.reset",
  "mfa.failure", "mfa.recovery_code_used", "phone.verified",
];

/** Emails for user ids (one lookup per id per page view); the short id when unknown. */
function userNames() {
  const known = new Map();
  return (id) => {
    const el = h("span", {class: "mono", title: id}, id.slice(0, 8));
    if (!known.has(id)) {
      known.set(id, call("GET", `/api/v1/admin/users/${encodeURIComponent(id)}`).then((u) => u.email, () => null));
    }
    known.get(id).then((email) => {
      if (email) {
        el.className = "";
        replace(el, email);
      }
    });
    return el;
  };
}

function details(data, userName) {
  const entries = Object.entries(data || {});
  if (!entries.length) return h("span", {class: "muted"}, "—");
  return h("dl", {class: "kv"}, entries.map(([k, v]) => [
    h("dt", {}, k),
    h("dd", {}, k === "target_user_id" && typeof v === "string" ? userName(v)
      : typeof v === "string" ? v : JSON.stringify(v))]));
}

/** An email becomes the id of the user with exactly that email. */
async function userIdOf(value) {
  if (!value.includes("@")) return value;
  const page = await call("GET", `/api/v1/admin/users?${new URLSearchParams({q: value, limit: "200"})}`);
  const found = page.items.find((u) => u.email === value.toLowerCase());
  if (!found) throw Object.assign(new Error(`No user has the email ${value}.`), {detail: `No user has the email ${value}.`});
  return found.id;
}

export function render(main, ctx) {
  const msg = messages();
  const type = h("select", {name: "type"},
    h("option", {value: ""}, "All events"),
    EVENT_TYPES.map((t) => h("option", {value: t}, t)));
  type.value = ctx.params.get("type") || "";
  const user = h("input", {type: "text", name: "user_id", value: ctx.params.get("user_id") || "",
    autocomplete: "off", spellcheck: "false"});
  const userName = userNames();
  const filters = h("form", {class: "toolbar"},
    field("Event type", type),
    field("User", user, "Email address or user ID of the user who acted."),
    h("button", {type: "submit", class: "secondary"}, "Apply filters"));
  const list = h("div", {});
  const paging = pager(load);

  replace(main,
    h("div", {class: "page-head"}, h("h1", {}, "Audit log"),
      h("p", {class: "lead"}, "Security events, newest first.")),
    filters, msg.el, list, paging.el);

  filters.addEventListener("submit", (event) => {
    event.preventDefault();
    const query = new URLSearchParams();
    if (type.value) query.set("type", type.value);
    if (user.value.trim()) query.set("user_id", user.value.trim());
    history.replaceState(null, "", `/console/admin/audit${query.size ? `?${query}` : ""}`);
    paging.reset();
  });

  async function load(cursor) {
    msg.clear();
    const params = new URLSearchParams({limit: "50"});
    if (type.value) params.set("type", type.value);
    if (cursor) params.set("cursor", cursor);
    try {
      if (user.value.trim()) params.set("user_id", await userIdOf(user.value.trim()));
      const page = await call("GET", `/api/v1/admin/audit?${params}`);
      const rows = page.items.map((event) => h("tr", {},
        h("td", {}, time(event.at)),
        h("td", {}, h("code", {class: "nowrap"}, event.type)),
        h("td", {}, event.user_id ? userName(event.user_id)
          : h("span", {class: "muted", title: "No signed-in actor: the command line, or a request without a session"}, "—")),
        h("td", {}, event.ip || "—"),
        h("td", {}, details(event.data, userName)),
        h("td", {}, event.request_id ? h("code", {class: "nowrap", title: event.request_id}, event.request_id.slice(0, 12)) : "—")));
      replace(list, rows.length
        ? table("Audit events", ["Time", "Event", "Actor", "IP address", "Details", "Request"], rows)
        : h("p", {class: "empty"}, "No events match these filters."));
      return page.next_cursor;
    } catch (error) {
      replace(list);
      msg.error(describeError(error));
      return null;
    }
  }

  paging.reset();
}
