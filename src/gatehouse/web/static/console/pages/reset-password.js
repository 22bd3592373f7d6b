// The page a reset email links to: /console/reset-password#token=... (API.md §8).

import { call, isMissingRoute } from "../api.js";
import { busy, checkbox, describeError, field, h, messages, replace } from "../dom.js";
import { takeToken } from "./link-token.js";

export function render(main) {
  const token = takeToken();
  const msg = messages();
  const passwordInput = h("input", {type: "password", name: "new-password", autocomplete: "new-password", required: true});
  const show = checkbox("Show password", {onchange: () => { passwordInput.type = show.input.checked ? "text" : "password"; }});
  const submit = h("button", {type: "submit", class: "primary wide"}, "Set password");
  const form = h("form", {novalidate: true},
    field("New password", passwordInput, "A long passphrase works best; common or breached passwords are refused."),
    show.el,
    submit);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    msg.clear();
    if (!token) {
      msg.error("This link is incomplete. Open the link from the email again, or ask for a new one.");
      return;
    }
    if (!passwordInput.value) {
      msg.error("Enter a new password.");
      passwordInput.focus();
      return;
    }
    busy(submit, async () => {
      try {
        await call("POST", "/api/v1/auth/password/reset", {token, new_password: passwordInput.value});
        form.hidden = true;
        msg.notice(h("span", {}, "Your password is set and every other session was signed out. ",
          h("a", {href: "/console/"}, "Sign in with your new password"), "."));
      } catch (error) {
        if (error.code === "link_invalid") {
          msg.error(h("span", {}, "This link has expired or was already used. ",
            h("a", {href: "/console/forgot-password"}, "Ask for a new link"), "."));
        } else if (isMissingRoute(error)) {
          msg.error("This server does not offer password reset yet.");
        } else {
          msg.error(describeError(error));
        }
      }
    });
  });
  replace(main, h("div", {class: "auth-card"},
    h("h1", {}, "Set a new password"),
    h("p", {class: "lead"}, "Choose the password you will sign in with from now on."),
    msg.el,
    form,
    h("p", {class: "aside"}, h("a", {href: "/console/"}, "Back to sign in")),
  ));
  if (!token) msg.error("This link is incomplete. Open the link from the email again, or ask for a new one.");
  passwordInput.focus();
}
