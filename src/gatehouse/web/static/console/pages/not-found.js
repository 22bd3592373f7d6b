// Any /console/ path the console does not know.

import { h, replace } from "../dom.js";

export function render(main, ctx) {
  replace(main,
    h("h1", {}, "Page not found"),
    h("p", {}, "There is no console page at this address. "),
    h("p", {}, h("a", {href: ctx.state.user ? "/console/account" : "/console/"},
      ctx.state.user ? "Go to your account" : "Go to sign in")));
}
