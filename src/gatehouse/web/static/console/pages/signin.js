// Sign in: email + password, then the second factor when the account has one (API.md §8).

import { client } from "../api.js";
import { busy, describeError, field, h, messages, replace, waitText } from "../dom.js";

/** What a failed sign-in means for the person at the keyboard. */
export function signInMessage(error) {
  switch (error && error.code) {
    case "invalid_credentials":
      return "Wrong email or password.";
    case "login_throttled":
      return `Too many failed sign-in attempts. Wait ${waitText(error.retryAfter)}, then try again.`;
    case "rate_limited":
      return `Too many requests from this address. Wait ${waitText(error.retryAfter)}, then try again.`;
    case "account_disabled":
      return "This account is disabled. Ask an administrator to enable it.";
    case "email_unverified":
      return "Verify your email address first: open the link we emailed you.";
    case "mfa_invalid":
      return "That code is not right. Enter the current code from your authenticator app, or a recovery code.";
    case "mfa_expired":
      return "This sign-in attempt has expired. Enter your email and password again.";
    default:
      return describeError(error);
  }
}

export function render(main, ctx) {
  const box = h("div", {class: "auth-card"});
  replace(main, box);
  passwordStep(box, ctx, ctx.takeFlash());
}

function passwordStep(box, ctx, flash, email = "") {
  const msg = messages();
  const emailInput = h("input", {type: "email", name: "email", autocomplete: "username", required: true, value: email});
  const passwordInput = h("input", {type: "password", name: "password", autocomplete: "current-password", required: true});
  const submit = h("button", {type: "submit", class: "primary wide"}, "Sign in");
  const form = h("form", {novalidate: true},
    field("Email", emailInput),
    field("Password", passwordInput),
    submit,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    msg.clear();
    if (!emailInput.value.trim() || !passwordInput.value) {
      msg.error("Enter your email and password.");
      (emailInput.value.trim() ? passwordInput : emailInput).focus();
      return;
    }
    busy(submit, async () => {
      try {
        const result = await client.login(emailInput.value.trim(), passwordInput.value);
        await ctx.signedIn(result.user);
      } catch (error) {
        if (error && error.code === "mfa_required" && error.mfaToken) {
          mfaStep(box, ctx, error.mfaToken, emailInput.value.trim());
          return;
        }
        passwordInput.value = "";
        msg.error(signInMessage(error));
        passwordInput.focus();
      }
    });
  });
  replace(box,
    h("h1", {}, "Sign in"),
    h("p", {class: "lead"}, "Sign in to manage your Gatehouse account."),
    msg.el,
    form,
    h("p", {class: "aside"}, h("a", {href: "/console/forgot-password"}, "Forgot password?")),
  );
  if (flash && flash.kind === "error") msg.error(flash.text);
  else if (flash) msg.notice(flash.text);
  emailInput.value ? passwordInput.focus() : emailInput.focus();
}

/** The second step: a TOTP or recovery code for the `mfa_token` the password step earned. */
function mfaStep(box, ctx, mfaToken, email) {
  const msg = messages();
  const codeInput = h("input", {
    type: "text", name: "code", inputmode: "numeric", autocomplete: "one-time-code",
    required: true, maxlength: "32", spellcheck: "false",
  });
  const submit = h("button", {type: "submit", class: "primary wide"}, "Verify");
  const form = h("form", {novalidate: true},
    field("Authentication code", codeInput,
      "The 6-digit code from your authenticator app, or one of your recovery codes."),
    submit);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    msg.clear();
    if (!codeInput.value.trim()) {
      msg.error("Enter the code from your authenticator app.");
      codeInput.focus();
      return;
    }
    busy(submit, async () => {
      try {
        const result = await client.verifyMfa(mfaToken, codeInput.value.trim());
        await ctx.signedIn(result.user);
      } catch (error) {
        if (error && error.code === "mfa_expired") {
          passwordStep(box, ctx, {kind: "error", text: signInMessage(error)}, email);
          return;
        }
        codeInput.value = "";
        msg.error(signInMessage(error));
        codeInput.focus();
      }
    });
  });
  const back = h("button", {type: "button", class: "link", onclick: () => passwordStep(box, ctx, null, email)},
    "Use a different account");
  replace(box,
    h("h1", {}, "Two-step verification"),
    h("p", {class: "lead"}, `Signing in as ${email}.`),
    msg.el,
    form,
    h("p", {class: "aside"}, back),
  );
  codeInput.focus();
}
