// The account page's second-factor section (API.md §8). Setup, confirmation with the QR code
// and recovery codes arrive with issue 11; until then this shows the account's state only.

import { h, replace } from "../dom.js";

export function renderSecondFactor(section, profile) {
  const on = profile.mfa_enabled === true;
  replace(section,
    h("h2", {id: "mfa-h"}, "Two-step verification"),
    h("div", {class: "card"},
      h("p", {}, "Status: ", h("strong", {}, on ? "On" : "Off")),
      h("p", {class: "hint"}, on
        ? "Signing in asks for a code from your authenticator app."
        : "A code from an authenticator app on your phone, asked after your password, keeps your account safe even if your password leaks.")));
}
