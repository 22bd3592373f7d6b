// "Forgot password?": ask for a reset link (POST /auth/password/forgot, API.md §8).

import { call, isMissingRoute } from "../api.js";
import { busy, describeError, field, h, messages, replace } from "../dom.js";

export function render(main) {
  const msg = messages();
  const emailInput = h("input", {type: "email", name: "email", autocomplete: "username", required: true});
  const submit = h("button", {type: "submit", class: "primary wide"}, "Send reset link");
  const form = h("form", {novalidate: true}, field("Email", emailInput), submit);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    msg.clear();
    const email = emailInput.value.trim();
    if (!email) {
      msg.error("Enter the email address of your account.");
      emailInput.focus();
      return;
    }
    busy(submit, async () => {
      try {
        await call("POST", "/api/v1/auth/password/forgot", {email});
        msg.notice(`If ${email} belongs to an account, a link to set a new password is on its way. It works once, for a limited time.`);
      } catch (error) {
        msg.error(isMissingRoute(error)
          ? "This server does not offer password reset yet. Ask an administrator to set a new password for you."
          : describeError(error));
      }
    });
  });
  replace(main, h("div", {class: "auth-card"},
    h("h1", {}, "Reset your password"),
    h("p", {class: "lead"}, "Enter your account's email address and we will send you a link to set a new password."),
    msg.el,
    form,
    h("p", {class: "aside"}, h("a", {href: "/console/"}, "Back to sign in")),
  ));
  emailInput.focus();
}
