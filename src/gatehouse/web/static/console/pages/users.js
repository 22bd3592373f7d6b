// Admin: users (search, paging, create, roles, disable/enable, unlock, revoke sessions).

import { call, isMissingRoute } from "../api.js";
import {
  busy, checkbox, confirmDialog, describeError, field, h, messages, nextId, openDialog, replace,
  table, time,
} from "../dom.js";
import { pager } from "./pager.js";

export const ROLES = [
  ["user", "User: own profile and sessions"],
  ["support", "Support: read users and the audit log"],
  ["operator", "Operator: manage users and sessions, read the audit log and operations"],
  ["admin", "Admin: everything, API keys included"],
];
const PAGE_SIZE = 20;

export function render(main, ctx) {
  const can = (p) => ctx.state.permissions.has(p);
  const msg = messages();
  const q = h("input", {type: "search", name: "q", value: ctx.params.get("q") || "", autocomplete: "off"});
  const search = h("form", {class: "toolbar", role: "search"},
    field("Search users", q, "Part of an email address or a name."),
    h("button", {type: "submit", class: "secondary"}, "Search"));
  const results = h("div", {});
  const paging = pager(load);
  const create = can("users:write")
    ? h("button", {type: "button", class: "primary", onclick: () => createUser(reload)}, "New user") : null;

  replace(main,
    h("div", {class: "page-head"}, h("h1", {}, "Users"), create),
    search, msg.el, results, paging.el);

  search.addEventListener("submit", (event) => {
    event.preventDefault();
    const url = q.value.trim() ? `?q=${encodeURIComponent(q.value.trim())}` : "";
    history.replaceState(null, "", `/console/admin/users${url}`);
    paging.reset();
  });

  function reload() { return load(paging.cursor); }

  async function load(cursor) {
    msg.clear();
    const params = new URLSearchParams({limit: String(PAGE_SIZE)});
    if (q.value.trim()) params.set("q", q.value.trim());
    if (cursor) params.set("cursor", cursor);
    try {
      const page = await call("GET", `/api/v1/admin/users?${params}`);
      const rows = page.items.map((user) => h("tr", {},
        h("td", {}, h("span", {class: "strong"}, user.email)),
        h("td", {}, user.name || "—"),
        h("td", {}, (user.roles || []).join(", ")),
        h("td", {}, user.disabled ? h("span", {class: "badge warn"}, "Disabled") : h("span", {class: "badge ok"}, "Active")),
        h("td", {}, time(user.created_at)),
        h("td", {}, h("button", {
          type: "button", class: "secondary small", "aria-label": `Manage ${user.email}`,
          onclick: () => manageUser(user, ctx, reload),
        }, "Manage"))));
      replace(results, rows.length
        ? table("Users", ["Email", "Name", "Roles", "Status", "Created", ""], rows)
        : h("p", {class: "empty"}, q.value.trim() ? "No user matches this search." : "No users yet."));
      return page.next_cursor;
    } catch (error) {
      replace(results);
      msg.error(describeError(error));
      return null;
    }
  }

  paging.reset();
}

function roleChecks(selected) {
  const boxes = ROLES.map(([role, label]) => ({role, ...checkbox(label, {name: "roles", value: role, checked: selected.includes(role)})}));
  const el = h("fieldset", {class: "checks"}, h("legend", {}, "Roles"), boxes.map((b) => b.el));
  return {el, value: () => boxes.filter((b) => b.input.checked).map((b) => b.role)};
}

function createUser(done) {
  return openDialog("New user", (close) => {
    const msg = messages();
    const email = h("input", {type: "email", name: "email", required: true, autocomplete: "off"});
    const name = h("input", {type: "text", name: "name", autocomplete: "off"});
    const password = h("input", {type: "password", name: "password", required: true, autocomplete: "new-password"});
    const roles = roleChecks(["user"]);
    const submit = h("button", {type: "submit", class: "primary"}, "Create user");
    const form = h("form", {novalidate: true},
      field("Email", email),
      field("Name", name),
      field("Password", password, "Common or breached passwords are refused. Share it with the person over a safe channel."),
      roles.el,
      msg.el,
      h("div", {class: "actions"},
        h("button", {type: "button", class: "secondary", onclick: () => close(false)}, "Cancel"),
        submit));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      msg.clear();
      if (!email.value.trim() || !password.value) {
        msg.error("Enter an email address and a password.");
        return;
      }
      busy(submit, async () => {
        try {
          await call("POST", "/api/v1/admin/users", {
            email: email.value.trim(), name: name.value.trim(), password: password.value, roles: roles.value(),
          });
          close(true);
          done();
        } catch (error) {
          msg.error(describeError(error));
        }
      });
    });
    queueMicrotask(() => email.focus());
    return form;
  });
}

/** One user's actions in a dialog; each action reports in the dialog's own message area. */
function manageUser(initial, ctx, done) {
  const can = (p) => ctx.state.permissions.has(p);
  let user = initial;
  let changed = false;
  return openDialog(`Manage ${user.email}`, (close) => {
    const msg = messages();
    const body = h("div", {class: "manage"});
    const act = (button, label, action) => busy(button, async () => {
      msg.clear();
      try {
        const updated = await action();
        if (updated && updated.id) user = updated;
        changed = true;
        msg.notice(label);
        draw();
      } catch (error) {
        msg.error(describeError(error));
      }
    });

    function draw() {
      const roles = roleChecks(user.roles || []);
      const saveRoles = h("button", {type: "submit", class: "primary"}, "Save roles");
      const rolesForm = h("form", {}, roles.el, h("div", {class: "actions"}, saveRoles));
      rolesForm.addEventListener("submit", (event) => {
        event.preventDefault();
        act(saveRoles, "Roles saved. They take effect within a second, without signing the user out.",
          () => call("PATCH", `/api/v1/admin/users/${encodeURIComponent(user.id)}`, {roles: roles.value()}));
      });
      const toggle = h("button", {type: "button", class: user.disabled ? "primary" : "danger"},
        user.disabled ? "Enable account" : "Disable account");
      toggle.addEventListener("click", async () => {
        if (!user.disabled && !await confirmDialog({
          title: `Disable ${user.email}?`,
          text: "The account cannot sign in and all its sessions end at once. You can enable it again later.",
          confirm: "Disable account",
        })) return;
        act(toggle, user.disabled ? "The account is enabled." : "The account is disabled and its sessions ended.",
          () => call("PATCH", `/api/v1/admin/users/${encodeURIComponent(user.id)}`, {disabled: !user.disabled}));
      });
      const unlock = h("button", {type: "button", class: "secondary"}, "Unlock sign-in");
      unlock.addEventListener("click", () => act(unlock, "Sign-in throttling is cleared for this account.",
        () => call("POST", `/api/v1/admin/users/${encodeURIComponent(user.id)}/unlock`)));
      const resetMfa = h("button", {type: "button", class: "secondary"}, "Reset two-step verification");
      resetMfa.addEventListener("click", async () => {
        if (!await confirmDialog({
          title: `Reset two-step verification of ${user.email}?`,
          text: "Their authenticator app and recovery codes stop working; they sign in with their password alone until they set it up again. Do this only after checking who is asking.",
          confirm: "Reset two-step verification",
        })) return;
        act(resetMfa, "Two-step verification is off for this user.", async () => {
          try {
            await call("DELETE", `/api/v1/admin/users/${encodeURIComponent(user.id)}/mfa`);
          } catch (error) {
            if (isMissingRoute(error)) throw Object.assign(error, {detail: "This server cannot reset two-step verification yet."});
            throw error;
          }
          return {...user, mfa_enabled: false};
        });
      });
      const revoke = h("button", {type: "button", class: "secondary"}, "Revoke sessions");
      revoke.addEventListener("click", () => act(revoke, "Every session of this user has ended.",
        () => call("POST", `/api/v1/admin/users/${encodeURIComponent(user.id)}/revoke-sessions`)));
      replace(body,
        h("dl", {class: "facts"},
          h("dt", {}, "Email"), h("dd", {}, user.email),
          h("dt", {}, "Name"), h("dd", {}, user.name || "—"),
          h("dt", {}, "Status"), h("dd", {}, user.disabled ? "Disabled" : "Active"),
          h("dt", {}, "Two-step verification"), h("dd", {}, user.mfa_enabled ? "On" : "Off"),
          h("dt", {}, "User ID"), h("dd", {}, h("code", {}, user.id))),
        can("users:write") ? h("section", {class: "roles"}, rolesForm) : null,
        h("section", {}, h("h3", {}, "Access"),
          h("div", {class: "actions start"},
            can("users:write") ? toggle : null,
            can("users:write") ? unlock : null,
            can("users:write") && user.mfa_enabled ? resetMfa : null,
            can("sessions:revoke") ? revoke : null,
            can("audit:read") ? h("a", {href: `/console/admin/audit?user_id=${encodeURIComponent(user.id)}`,
              class: "button secondary", onclick: () => close(changed)}, "Audit events by this user") : null)));
    }

    draw();
    const closer = h("div", {class: "actions"},
      h("button", {type: "button", class: "secondary", onclick: () => close(changed)}, "Close"));
    return h("div", {id: nextId("manage")}, body, msg.el, closer);
  }).then(() => { if (changed) done(); });
}
