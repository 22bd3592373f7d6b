// The account page's "Two-step verification" section (API.md §8): set up a TOTP
// authenticator (QR code drawn here, from the otpauth:// URI, never by a third party),
// confirm it with a first code, show the recovery codes once; when on, turn it off or get
// a new set of recovery codes, each proven by a code.

import { call } from "../api.js";
import {
  busy, copyText, describeError, field, h, messages, nextId, openDialog, replace,
} from "../dom.js";
import qrcode from "../../vendor/qrcode-generator/qrcode.mjs";

const SVG = "http://www.w3.org/2000/svg";
const QUIET_ZONE = 4; // modules of light margin a scanner needs around the code

/** Render the section for `profile` (its `mfa_enabled` and `email`). */
export function renderSecondFactor(section, profile) {
  const view = {section, profile};
  if (profile.mfa_enabled === true) showOn(view);
  else showOff(view);
}

function heading() {
  return h("h2", {id: "mfa-h", tabindex: "-1"}, "Two-step verification");
}

/** After a change replaced the focused control, keyboard and screen-reader users start here. */
function refocus(view) {
  const target = view.section.querySelector("[data-focus]") || view.section.querySelector("h2");
  if (target) target.focus();
}

function status(on) {
  return h("p", {}, "Status: ", h("strong", {class: on ? "status-on" : null}, on ? "On" : "Off"));
}

// -- off ---------------------------------------------------------------------------------------

function showOff(view, notice) {
  const msg = messages();
  const start = h("button", {type: "button", class: "primary"}, "Set up two-step verification");
  start.addEventListener("click", () => busy(start, async () => {
    msg.clear();
    try {
      const setup = await call("POST", "/api/v1/auth/mfa/totp/setup");
      showSetup(view, setup);
    } catch (error) {
      if (error && error.status === 409 && /already on/i.test(error.detail || "")) {
        view.profile.mfa_enabled = true;
        showOn(view, "Two-step verification is already on (it was turned on elsewhere).");
        refocus(view);
        return;
      }
      msg.error(describeError(error));
    }
  }));
  replace(view.section, heading(), h("div", {class: "card"},
    status(false),
    h("p", {class: "hint"},
      "A code from an authenticator app on your phone, asked after your password, keeps your "
      + "account safe even if your password leaks."),
    msg.el,
    h("div", {class: "actions start"}, start)));
  if (notice) msg.notice(notice);
}

/** Step 1 scan (or type the key), step 2 enter the first code to turn it on. */
function showSetup(view, setup) {
  const msg = messages();
  const keyText = groupsOf4(setup.secret);
  const key = h("code", {class: "secret-key", id: nextId("key")}, keyText);
  const copyNote = h("span", {class: "copied", "aria-live": "polite"});
  const copy = h("button", {type: "button", class: "secondary small"}, "Copy key");
  copy.addEventListener("click", async () => {
    copyNote.textContent = await copyText(setup.secret) ? "Copied" : "Select the key and copy it";
  });
  const codeInput = h("input", {
    type: "text", name: "code", inputmode: "numeric", autocomplete: "one-time-code",
    required: true, maxlength: "32", spellcheck: "false", class: "code-input",
  });
  const confirm = h("button", {type: "submit", class: "primary"}, "Turn on");
  const cancel = h("button", {type: "button", class: "secondary"}, "Cancel");
  cancel.addEventListener("click", () => { showOff(view); refocus(view); });
  const form = h("form", {class: "setup-confirm", novalidate: true},
    h("h3", {}, "2. Enter the code the app shows"),
    field("Authentication code", codeInput,
      "The 6-digit code for Gatehouse in your authenticator app. It changes every 30 seconds."),
    msg.el,
    h("div", {class: "actions start"}, confirm, cancel));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    msg.clear();
    const code = codeInput.value.replace(/\s+/g, "");
    if (!code) {
      msg.error("Enter the 6-digit code from your authenticator app.");
      codeInput.focus();
      return;
    }
    busy(confirm, async () => {
      try {
        const answer = await call("POST", "/api/v1/auth/mfa/totp/confirm", {code});
        view.profile.mfa_enabled = true;
        showCodes(view, answer.recovery_codes, "Two-step verification is on.");
        refocus(view);
      } catch (error) {
        codeInput.value = "";
        codeInput.focus();
        if (error && error.status === 409 && /already on/i.test(error.detail || "")) {
          view.profile.mfa_enabled = true;
          showOn(view, "Two-step verification is already on (it was turned on elsewhere).");
          refocus(view);
        } else if (error && (error.status === 409 || /no setup is pending/i.test(error.detail || ""))) {
          // Replaced or finished elsewhere (another tab): this QR code is no longer the one.
          msg.error(`${describeError(error)} Cancel and set it up again.`);
        } else {
          msg.error(error && error.status === 422
            ? "That code is not right. Enter the code the app shows now; if it still fails, "
              + "check that your phone sets its clock automatically."
            : describeError(error));
        }
      }
    });
  });

  replace(view.section, heading(), h("div", {class: "card mfa-setup"},
    status(false),
    h("div", {class: "setup-scan"},
      h("div", {},
        h("h3", {}, "1. Add Gatehouse to your authenticator app"),
        h("p", {}, "Scan this QR code with an authenticator app (such as Google Authenticator, "
          + "Microsoft Authenticator, 1Password or Aegis)."),
        qrSvg(setup.otpauth_uri),
      ),
      h("div", {class: "setup-key"},
        h("p", {}, "Cannot scan it? Choose to enter a setup key in the app, and type this key "
          + "(time based; spaces do not matter):"),
        h("p", {}, key),
        h("div", {class: "copy-row"}, copy, copyNote))),
    form));
  codeInput.focus();
}

/** The key as an authenticator app shows it: groups of 4 characters. */
export function groupsOf4(secret) {
  return (String(secret).replace(/\s+/g, "").match(/.{1,4}/g) || []).join(" ");
}

/**
 * The QR code of `text` (byte mode, error correction M) as an inline SVG built with DOM APIs:
 * dark modules on a light square with the quiet zone, in both colour schemes.
 */
export function qrSvg(text) {
  const qr = qrcode(0, "M");
  // The encoder takes one character per byte: hand it the UTF-8 bytes, so nothing non-ASCII
  // in an issuer or address is cut to its low byte.
  qr.addData(String.fromCharCode(...new TextEncoder().encode(text)), "Byte");
  qr.make();
  const count = qr.getModuleCount();
  const size = count + 2 * QUIET_ZONE;
  let d = "";
  for (let row = 0; row < count; row += 1) {
    for (let col = 0; col < count; col += 1) {
      if (qr.isDark(row, col)) d += `M${col + QUIET_ZONE} ${row + QUIET_ZONE}h1v1h-1z`;
    }
  }
  const svg = document.createElementNS(SVG, "svg");
  const attrs = {
    viewBox: `0 0 ${size} ${size}`, class: "qr", role: "img", "shape-rendering": "crispEdges",
    "aria-label": "QR code to scan with your authenticator app",
  };
  for (const [name, value] of Object.entries(attrs)) svg.setAttribute(name, value);
  const back = document.createElementNS(SVG, "rect");
  for (const [name, value] of Object.entries({width: size, height: size, fill: "#fff"})) {
    back.setAttribute(name, String(value));
  }
  const modules = document.createElementNS(SVG, "path");
  modules.setAttribute("d", d);
  modules.setAttribute("fill", "#000");
  svg.append(back, modules);
  return svg;
}

// -- recovery codes ------------------------------------------------------------------------------

/** The recovery codes exist only in this answer: show them once, with copy and download. */
function showCodes(view, codes, notice) {
  const msg = messages();
  const text = recoveryText(view.profile.email, codes);
  const copyNote = h("span", {class: "copied", "aria-live": "polite"});
  const copy = h("button", {type: "button", class: "secondary"}, "Copy codes");
  copy.addEventListener("click", async () => {
    copyNote.textContent = await copyText(codes.join("\n")) ? "Copied" : "Select the codes and copy them";
  });
  const download = h("button", {type: "button", class: "secondary"}, "Download codes (.txt)");
  download.addEventListener("click", () => {
    const url = URL.createObjectURL(new Blob([text], {type: "text/plain;charset=utf-8"}));
    const link = h("a", {href: url, download: "gatehouse-recovery-codes.txt", hidden: true});
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
    copyNote.textContent = "Downloaded gatehouse-recovery-codes.txt";
  });
  const done = h("button", {type: "button", class: "primary"}, "I have stored my codes");
  done.addEventListener("click", () => { showOn(view); refocus(view); });
  const listId = nextId("codes");
  replace(view.section, heading(), h("div", {class: "card reveal"},
    msg.el,
    h("h3", {id: `${listId}-h`, tabindex: "-1", "data-focus": true}, "Your recovery codes"),
    h("p", {class: "message warn-box"}, h("strong", {}, "Store these now. "),
      "This is the only time they are shown. If you lose your phone, each code signs you in once "
      + "in place of an authentication code. Keep them somewhere safe, such as a password manager."),
    h("ol", {class: "recovery-codes", id: listId, "aria-labelledby": `${listId}-h`},
      codes.map((code) => h("li", {}, h("code", {}, code)))),
    h("div", {class: "copy-row wrap"}, copy, download),
    h("p", {class: "copy-note"}, copyNote),
    h("div", {class: "actions start"}, done)));
  msg.notice(notice);
}

function recoveryText(email, codes) {
  return [
    `Gatehouse recovery codes for ${email || "your account"}`,
    `Created ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC.`,
    "Each code signs you in once in place of an authentication code.",
    "",
    ...codes,
    "",
  ].join("\n");
}

// -- on ------------------------------------------------------------------------------------------

function showOn(view, notice) {
  const msg = messages();
  const off = h("button", {type: "button", class: "danger"}, "Turn off two-step verification");
  const renew = h("button", {type: "button", class: "secondary"}, "Get new recovery codes");
  off.addEventListener("click", async () => {
    const done = await askForCode({
      title: "Turn off two-step verification?",
      text: "Signing in will ask for your password only. Enter a code from your authenticator "
        + "app, or one of your recovery codes, to confirm.",
      confirm: "Turn off two-step verification",
      danger: true,
      send: (code) => call("DELETE", "/api/v1/auth/mfa/totp", {code}),
    });
    if (!done) return;
    view.profile.mfa_enabled = false;
    showOff(view, "Two-step verification is off. Your recovery codes no longer work.");
    refocus(view);
  });
  renew.addEventListener("click", async () => {
    const answer = await askForCode({
      title: "Get new recovery codes?",
      text: "Your current recovery codes stop working. Enter a code from your authenticator "
        + "app, or one of your recovery codes, to confirm.",
      confirm: "Get new recovery codes",
      danger: false,
      send: (code) => call("POST", "/api/v1/auth/mfa/recovery-codes", {code}),
    });
    if (!answer) return;
    showCodes(view, answer.recovery_codes, "New recovery codes are ready; the old ones no longer work.");
    refocus(view);
  });
  replace(view.section, heading(), h("div", {class: "card"},
    status(true),
    h("p", {class: "hint"}, "Signing in asks for a code from your authenticator app after your "
      + "password. Lost your phone? Sign in with a recovery code."),
    msg.el,
    h("div", {class: "actions start"}, renew, off)));
  if (notice) msg.notice(notice);
}

/**
 * A dialog asking for a TOTP or recovery code; `send(code)` runs the change. Resolves with its
 * answer (true for an empty one), or undefined when cancelled. Wrong codes stay in the dialog.
 */
function askForCode({title, text, confirm, danger, send}) {
  return openDialog(title, (close) => {
    const msg = messages();
    const input = h("input", {
      type: "text", name: "code", autocomplete: "one-time-code", required: true,
      maxlength: "32", spellcheck: "false", autocapitalize: "off", class: "code-input",
    });
    const submit = h("button", {type: "submit", class: danger ? "danger" : "primary"}, confirm);
    const form = h("form", {novalidate: true},
      h("p", {}, text),
      field("Authentication code", input, "6 digits from the app, or a recovery code like abcde-12345."),
      msg.el,
      h("div", {class: "actions"},
        h("button", {type: "button", class: "secondary", onclick: () => close(undefined)}, "Cancel"),
        submit));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      msg.clear();
      const code = input.value.trim();
      if (!code) {
        msg.error("Enter a code from your authenticator app or a recovery code.");
        input.focus();
        return;
      }
      busy(submit, async () => {
        try {
          close((await send(code)) ?? true);
        } catch (error) {
          input.value = "";
          input.focus();
          msg.error(error && error.status === 422
            ? "That code is not right, or it was already used. Enter the code the app shows now, "
              + "or an unused recovery code."
            : describeError(error));
        }
      });
    });
    queueMicrotask(() => input.focus());
    return form;
  });
}
