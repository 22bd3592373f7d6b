// A page the signed-in user lacks the permission for (403 never signs anyone out).

import { h, replace } from "../dom.js";

export function render(main) {
  replace(main,
    h("h1", {}, "Not available"),
    h("div", {role: "alert", class: "message error"},
      "Your account does not have permission to see this page. Ask an administrator if you need it."),
    h("p", {}, h("a", {href: "/console/account"}, "Go to your account")));
}
