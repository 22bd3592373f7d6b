// My account: profile, password, sessions (this device marked), sign out everywhere,
// second factor and notifications (channels, phone, this browser's push).

import { call, client, isMissingRoute } from "../api.js";
import {
  busy, confirmDialog, date, describeError, field, h, messages, replace, table, time,
} from "../dom.js";
import { renderSecondFactor } from "./account-mfa.js";
import { renderNotifications } from "./account-notifications.js";

export async function render(main, ctx) {
  const profile = await call("GET", "/api/v1/users/profile");
  ctx.state.user = {...ctx.state.user, ...profile};
  const top = messages();
  const mfa = h("section", {"aria-labelledby": "mfa-h"});
  const notify = h("section", {"aria-labelledby": "notify-h"});
  replace(main,
    h("div", {class: "page-head"}, h("h1", {}, "Account"),
      h("p", {class: "lead"}, `Signed in as ${profile.email}`)),
    top.el,
    profileSection(profile, ctx),
    passwordSection(profile.email),
    sessionsSection(ctx, top),
    mfa,
    notify,
  );
  const flash = ctx.takeFlash();
  if (flash) flash.kind === "error" ? top.error(flash.text) : top.notice(flash.text);
  renderSecondFactor(mfa, profile);
  renderNotifications(notify, profile);
  return () => document.removeEventListener(SESSIONS_CHANGED, reloadSessions);
}

const SESSIONS_CHANGED = "gatehouse:sessions-changed";
let reloadSessions = () => {};

function profileSection(profile, ctx) {
  const msg = messages();
  const nameInput = h("input", {type: "text", name: "name", autocomplete: "name", maxlength: "200", value: profile.name || ""});
  const save = h("button", {type: "submit", class: "primary"}, "Save name");
  const form = h("form", {class: "card"},
    h("dl", {class: "facts"},
      h("dt", {}, "Email"), h("dd", {}, profile.email,
        profile.email_verified === false ? h("span", {class: "badge warn"}, "not verified") : null),
      h("dt", {}, "Roles"), h("dd", {}, (profile.roles || []).join(", ") || "none"),
      h("dt", {}, "Member since"), h("dd", {}, date(profile.created_at))),
    field("Name", nameInput),
    msg.el,
    h("div", {class: "actions"},
      profile.email_verified === false ? verifyButton(msg) : null,
      save));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    msg.clear();
    busy(save, async () => {
      try {
        const updated = await call("PATCH", "/api/v1/users/profile", {name: nameInput.value.trim()});
        ctx.state.user = {...ctx.state.user, ...updated};
        msg.notice("Your name is saved.");
      } catch (error) {
        msg.error(describeError(error));
      }
    });
  });
  return h("section", {"aria-labelledby": "profile-h"}, h("h2", {id: "profile-h"}, "Profile"), form);
}

/** Ask for a new verification link (POST /auth/email/verify-request, API.md §8). */
function verifyButton(msg) {
  const button = h("button", {type: "button", class: "secondary"}, "Send verification email");
  button.addEventListener("click", () => busy(button, async () => {
    msg.clear();
    try {
      await call("POST", "/api/v1/auth/email/verify-request");
      msg.notice("A verification link is on its way to your inbox. It works once, for a limited time.");
    } catch (error) {
      msg.error(isMissingRoute(error) ? "This server does not offer email verification yet." : describeError(error));
    }
  }));
  return button;
}

function passwordSection(email) {
  const msg = messages();
  const current = h("input", {type: "password", name: "current-password", autocomplete: "current-password", required: true});
  const next = h("input", {type: "password", name: "new-password", autocomplete: "new-password", required: true});
  const save = h("button", {type: "submit", class: "primary"}, "Change password");
  // Password managers pair the new password with this (hidden) account name.
  const username = h("input", {type: "email", name: "username", autocomplete: "username",
    value: email, hidden: true, readonly: true, tabindex: "-1", "aria-hidden": "true"});
  const form = h("form", {class: "card", novalidate: true},
    field("Current password", current),
    field("New password", next, "A long passphrase works best; common or breached passwords are refused."),
    username,
    msg.el,
    h("div", {class: "actions"}, save));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    msg.clear();
    if (!current.value || !next.value) {
      msg.error("Enter your current password and a new one.");
      return;
    }
    busy(save, async () => {
      try {
        await call("POST", "/api/v1/users/profile/password",
          {current_password: current.value, new_password: next.value});
        current.value = "";
        next.value = "";
        msg.notice("Your password is changed. Your other sessions were signed out.");
        document.dispatchEvent(new CustomEvent(SESSIONS_CHANGED));
      } catch (error) {
        msg.error(describeError(error));
      }
    });
  });
  return h("section", {"aria-labelledby": "password-h"}, h("h2", {id: "password-h"}, "Password"), form);
}

/** "Chrome on Linux" from a User-Agent string; the raw string stays in the tooltip. */
export function deviceName(ua) {
  if (!ua) return "Unknown device";
  const browser = /Edg\//.test(ua) ? "Edge" : /OPR\//.test(ua) ? "Opera" : /Firefox\//.test(ua) ? "Firefox"
    : /Chrom(e|ium)\//.test(ua) ? "Chrome" : /Safari\//.test(ua) ? "Safari"
    : /python-httpx|python/i.test(ua) ? "Python client" : /curl/i.test(ua) ? "curl" : "Browser";
  const os = /Android/.test(ua) ? "Android" : /iPhone|iPad/.test(ua) ? "iOS" : /Windows/.test(ua) ? "Windows"
    : /Mac OS X/.test(ua) ? "macOS" : /Linux/.test(ua) ? "Linux" : null;
  return os ? `${browser} on ${os}` : browser;
}

function sessionsSection(ctx, top) {
  const msg = messages();
  const list = h("div", {});
  const everywhere = h("button", {type: "button", class: "danger"}, "Sign out everywhere");
  const section = h("section", {"aria-labelledby": "sessions-h"},
    h("h2", {id: "sessions-h"}, "Sessions"),
    h("p", {class: "hint"}, "Each sign-in on a device is a session. End the ones you do not recognise."),
    msg.el,
    list,
    h("div", {class: "actions"}, everywhere));

  async function load() {
    try {
      const page = await call("GET", "/api/v1/auth/sessions?limit=200");
      const rows = page.items.map((s) => {
        const device = deviceName(s.user_agent);
        const end = s.current ? h("span", {class: "badge ok"}, "This device")
          : h("button", {
            type: "button", class: "secondary small", "aria-label": `End session on ${device}, ${s.ip || "unknown address"}`,
            onclick: (event) => endSession(event.currentTarget, s.id, device),
          }, "End session");
        return h("tr", {class: s.current ? "current" : null},
          h("td", {}, h("span", {title: s.user_agent || ""}, device)),
          h("td", {}, s.ip || "—"),
          h("td", {}, time(s.created_at)),
          h("td", {}, time(s.last_used_at)),
          h("td", {}, end));
      });
      replace(list, table("Your sessions", ["Device", "IP address", "Signed in", "Last active", ""], rows));
    } catch (error) {
      msg.error(describeError(error));
    }
  }

  async function endSession(button, id, device) {
    msg.clear();
    await busy(button, async () => {
      try {
        await call("DELETE", `/api/v1/auth/sessions/${encodeURIComponent(id)}`);
        msg.notice(`The session on ${device} is signed out.`);
        await load();
      } catch (error) {
        msg.error(describeError(error));
      }
    });
  }

  everywhere.addEventListener("click", async () => {
    const ok = await confirmDialog({
      title: "Sign out everywhere?",
      text: "Every session of your account ends, on every device, this one included. You will need to sign in again.",
      confirm: "Sign out everywhere",
    });
    if (!ok) return;
    try {
      await client.logoutAll();
      ctx.state.user = null;
      ctx.state.permissions = new Set();
      ctx.state.flash = {kind: "notice", text: "You have signed out everywhere: every session of your account has ended."};
      await ctx.navigate("/console/");
    } catch (error) {
      top.error(describeError(error));
    }
  });
  reloadSessions = load;
  document.addEventListener(SESSIONS_CHANGED, reloadSessions);
  load();
  return section;
}
