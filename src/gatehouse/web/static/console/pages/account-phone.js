// The phone texts go to (API.md §10): save it (the server stores it as E.164, unverified),
// have a 6-digit code texted to it, type the code back to verify it.

import { call } from "../api.js";
import { busy, describeError, field, h, messages, replace, waitText } from "../dom.js";

const PROFILE = "/api/v1/users/profile";

/**
 * The phone card. `changed({phone, phone_verified})` runs after every change, so the
 * channel switches can say whether texts can reach the user.
 */
export function renderPhone(changed, profile) {
  const card = h("div", {class: "card notify-card"});
  const view = {card, changed, phone: profile.phone || null, verified: profile.phone_verified === true};
  draw(view);
  return card;
}

/** 422 and 429 carry a sentence for the person (problem+json `detail`); the rest as usual. */
function explain(error) {
  if (error && error.code === "rate_limited") {
    return `${error.detail || "Too many codes asked for."} Try again in ${waitText(error.retryAfter)}.`;
  }
  if (error && error.status === 422 && error.detail) return error.detail;
  return describeError(error);
}

function draw(view, notice, focus) {
  const msg = messages();
  const input = h("input", {type: "tel", name: "phone", autocomplete: "tel", inputmode: "tel",
    maxlength: "32", spellcheck: "false", value: view.phone || ""});
  const save = h("button", {type: "submit", class: "primary"}, "Save phone");
  const remove = view.phone
    ? h("button", {type: "button", class: "secondary"}, "Remove phone") : null;
  const form = h("form", {class: "phone-form", novalidate: true},
    field("Phone number", input,
      "With + and the country code (E.164), for example +1 415 555 2671. Used for security texts only."),
    h("div", {class: "actions start"}, save, remove),
    msg.el);

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    msg.clear();
    const value = input.value.trim();
    if (!value) {
      msg.error("Enter a phone number with its country code, such as +1 415 555 2671.");
      input.focus();
      return;
    }
    busy(save, () => savePhone(view, msg, value, input));
  });
  if (remove) {
    remove.addEventListener("click", () => busy(remove, () => savePhone(view, msg, null, remove)));
  }

  replace(view.card,
    h("h3", {id: "phone-h", tabindex: "-1"}, "Phone for text messages"),
    statusLine(view),
    form,
    view.phone && !view.verified ? verifyForm(view, msg) : null);
  if (notice) msg.notice(notice);
  const target = focus && view.card.querySelector(focus);
  if (target) target.focus();
}

function statusLine(view) {
  if (!view.phone) return h("p", {class: "phone-status"}, "No phone number yet.");
  return h("p", {class: "phone-status"}, "Number: ", h("strong", {class: "mono"}, view.phone),
    view.verified ? h("span", {class: "badge ok"}, "verified")
      : h("span", {class: "badge warn"}, "unverified"));
}

async function savePhone(view, msg, value, returnFocus) {
  try {
    const updated = await call("PATCH", PROFILE, {phone: value});
    view.phone = updated.phone || null;
    view.verified = updated.phone_verified === true;
    view.changed({phone: view.phone, phone_verified: view.verified});
    draw(view, view.phone
      ? (view.verified ? "Your phone number is saved." : "Saved. Send a code to verify the number.")
      : "Your phone number is removed; no more texts will be sent.",
    view.phone && !view.verified ? "[data-send]" : "#phone-h");
  } catch (error) {
    msg.error(explain(error));
    returnFocus.focus();
  }
}

/** "Send code", then the code field and "Verify"; their messages show below them (and
 * replace the phone form's, `saved`). */
function verifyForm(view, saved) {
  const msg = messages();
  const send = h("button", {type: "button", class: "secondary", "data-send": ""}, "Send code");
  const code = h("input", {type: "text", name: "code", inputmode: "numeric",
    autocomplete: "one-time-code", maxlength: "16", spellcheck: "false", class: "code-input"});
  const verify = h("button", {type: "submit", class: "primary"}, "Verify");
  const form = h("form", {class: "phone-verify", novalidate: true},
    h("p", {}, "Prove the number is yours: we text it a 6-digit code, valid for 10 minutes."),
    h("div", {class: "actions start"}, send),
    field("Verification code", code, "The 6 digits from the text message."),
    h("div", {class: "actions start"}, verify),
    msg.el);

  send.addEventListener("click", () => busy(send, async () => {
    saved.clear();
    msg.clear();
    try {
      await call("POST", `${PROFILE}/phone/verify-request`);
      msg.notice(`A code is on its way to ${view.phone}.`);
      code.focus();
    } catch (error) {
      msg.error(explain(error));
    }
  }));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    saved.clear();
    msg.clear();
    const value = code.value.replace(/\s+/g, "");
    if (!value) {
      msg.error("Enter the 6-digit code from the text message.");
      code.focus();
      return;
    }
    busy(verify, async () => {
      try {
        await call("POST", `${PROFILE}/phone/verify`, {code: value});
        view.verified = true;
        view.changed({phone: view.phone, phone_verified: true});
        draw(view, "Your phone number is verified.", "#phone-h");
      } catch (error) {
        code.value = "";
        code.focus();
        msg.error(explain(error));
      }
    });
  });
  return form;
}
