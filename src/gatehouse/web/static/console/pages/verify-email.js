// The page a verification email links to: /console/verify-email#token=... (API.md §8).

import { call, isMissingRoute } from "../api.js";
import { describeError, h, messages, replace } from "../dom.js";
import { takeToken } from "./link-token.js";

export async function render(main, ctx) {
  const token = takeToken();
  const msg = messages();
  const next = h("p", {class: "aside"}, ctx.state.user
    ? h("a", {href: "/console/account"}, "Go to your account")
    : h("a", {href: "/console/"}, "Go to sign in"));
  replace(main, h("div", {class: "auth-card"}, h("h1", {}, "Verify your email"), msg.el, next));
  if (!token) {
    msg.error("This link is incomplete. Open the link from the email again, or ask for a new one from your account page.");
    return;
  }
  msg.notice("Verifying your email address…");
  try {
    await call("POST", "/api/v1/auth/email/verify", {token});
    msg.notice("Your email address is verified. Thank you.");
  } catch (error) {
    if (error.code === "link_invalid") {
      msg.error("This link has expired, was already used or was replaced by a newer one. Ask for a new one from your account page.");
    } else if (isMissingRoute(error)) {
      msg.error("This server does not offer email verification yet.");
    } else {
      msg.error(describeError(error));
    }
  }
}
