// The console entry point: session state, the header and the client-side router.
// Every path under /console/ loads this shell; the path picks the page module.

import { client, installBoundary, onSessionEnded, permissionsOf, restoreSession } from "./api.js";
import { describeError, h, replace } from "./dom.js";

const SIGN_IN = "/console/";

/** path → page module, title, and the permission the page needs (none: any signed-in user). */
const ROUTES = {
  "/console/": {page: "signin", title: "Sign in", public: true},
  "/console/forgot-password": {page: "forgot-password", title: "Forgot password", public: true},
  "/console/reset-password": {page: "reset-password", title: "Set a new password", public: true},
  "/console/verify-email": {page: "verify-email", title: "Verify your email", public: true},
  "/console/account": {page: "account", title: "Account"},
  "/console/admin/users": {page: "users", title: "Users", permission: "users:read"},
  "/console/admin/api-keys": {page: "api-keys", title: "API keys", permission: "api_keys:manage"},
  "/console/admin/audit": {page: "audit", title: "Audit log", permission: "audit:read"},
  "/console/ops": {page: "ops", title: "Operations", permission: "ops:read"},
};

/** The navigation, in order; a link shows only to users holding its permission. */
const NAV = [
  ["/console/account", "Account", null],
  ["/console/admin/users", "Users", "users:read"],
  ["/console/admin/api-keys", "API keys", "api_keys:manage"],
  ["/console/admin/audit", "Audit log", "audit:read"],
  ["/console/ops", "Operations", "ops:read"],
];

const ENDED = {
  session_revoked: "You have been signed out: the session was ended in another tab, on another device or by an administrator. Sign in again to continue.",
  refresh_expired: "Your session has expired. Sign in again to continue.",
  refresh_reused: "Your session was ended to protect your account (a sign-in token was used twice). Sign in again to continue.",
  refresh_invalid: "Your session is no longer valid. Sign in again to continue.",
  token_invalid: "Your session is no longer valid. Sign in again to continue.",
};

const state = {
  user: null,
  permissions: new Set(),
  flash: null, // {kind: "notice"|"error", text} shown once by the next page
  cleanup: null,
  renderId: 0,
};

const main = document.getElementById("main");
const header = document.getElementById("header");

function normalise(pathname) {
  if (pathname === "/console" || pathname === "/console/") return SIGN_IN;
  return pathname.length > 1 ? pathname.replace(/\/+$/, "") : pathname;
}

/** A `next` value is followed only to a console page of this origin. */
function safeNext(value) {
  if (!value || !value.startsWith("/console/") || value.startsWith("//") || value.includes("\\")) return null;
  const path = normalise(value.split(/[?#]/)[0]);
  return ROUTES[path] && !ROUTES[path].public ? value : null;
}

/** Go to a console path (pushState), then render it. */
export function navigate(target, {replace: replaceEntry = false} = {}) {
  const url = new URL(target, location.origin);
  if (replaceEntry) history.replaceState(null, "", url.pathname + url.search + url.hash);
  else history.pushState(null, "", url.pathname + url.search + url.hash);
  return render();
}

function renderHeader(current) {
  const brand = h("a", {href: state.user ? "/console/account" : SIGN_IN, class: "brand"},
    h("img", {src: "/static/console/favicon.svg", alt: "", width: "24", height: "24"}), "Gatehouse");
  if (!state.user) {
    replace(header, h("div", {class: "bar"}, brand));
    return;
  }
  const links = NAV.filter(([, , permission]) => !permission || state.permissions.has(permission))
    .map(([href, label]) => h("li", {}, h("a", {href, "aria-current": href === current ? "page" : null}, label)));
  const signOut = h("button", {type: "button", class: "secondary small", onclick: () => signOutHere(signOut)}, "Sign out");
  replace(header, h("div", {class: "bar"},
    brand,
    h("nav", {"aria-label": "Main"}, h("ul", {}, links)),
    h("div", {class: "who"}, h("span", {class: "email", title: state.user.email}, state.user.email), signOut)));
}

async function signOutHere(button) {
  button.disabled = true;
  try {
    await client.logout();
  } catch {
    // The session ends locally either way; the server forgets it when it can.
  }
  state.user = null;
  state.permissions = new Set();
  state.flash = {kind: "notice", text: "You have signed out."};
  await navigate(SIGN_IN);
}

/** Called by the sign-in page once the client holds a session. */
async function signedIn(user) {
  state.user = user;
  state.permissions = await permissionsOf();
  const next = safeNext(new URLSearchParams(location.search).get("next"));
  await navigate(next || "/console/account", {replace: true});
}

function sessionEnded(code) {
  if (!state.user) return;
  state.user = null;
  state.permissions = new Set();
  state.flash = {kind: "notice", text: ENDED[code] || ENDED.session_revoked};
  const here = location.pathname + location.search;
  const route = ROUTES[normalise(location.pathname)];
  const next = route && !route.public ? `?next=${encodeURIComponent(here)}` : "";
  navigate(SIGN_IN + next, {replace: true});
}

function pageContext(params) {
  return {
    state,
    params,
    navigate,
    signedIn,
    takeFlash() {
      const flash = state.flash;
      state.flash = null;
      return flash;
    },
    setTitle(title) { document.title = `${title} · Gatehouse`; },
  };
}

async function render() {
  const renderId = ++state.renderId;
  for (const dialog of document.querySelectorAll("dialog[open]")) dialog.close(); // a page's dialogs end with it
  if (state.cleanup) {
    try { state.cleanup(); } catch { /* a page's cleanup never blocks the next page */ }
    state.cleanup = null;
  }
  const path = normalise(location.pathname);
  if (path !== location.pathname) {
    history.replaceState(null, "", path + location.search + location.hash);
  }
  const route = ROUTES[path];
  const params = new URLSearchParams(location.search);
  if (route && !route.public && !state.user) {
    const here = path + location.search;
    return navigate(`${SIGN_IN}?next=${encodeURIComponent(here)}`, {replace: true});
  }
  if (path === SIGN_IN && state.user) {
    return navigate(safeNext(params.get("next")) || "/console/account", {replace: true});
  }
  if (route && !route.public && state.user) {
    try {
      state.permissions = await permissionsOf(); // roles may have changed since the last page
    } catch {
      // keep what we knew; an ended session is handled by sessionEnded
    }
    if (renderId !== state.renderId || !state.user) return undefined;
  }
  renderHeader(path);
  const ctx = pageContext(params);
  let module;
  if (!route) {
    module = await import("./pages/not-found.js");
    ctx.setTitle("Page not found");
  } else if (route.permission && !state.permissions.has(route.permission)) {
    module = await import("./pages/forbidden.js");
    ctx.setTitle(route.title);
  } else {
    module = await import(`./pages/${route.page}.js`);
    ctx.setTitle(route.title);
  }
  if (renderId !== state.renderId) return undefined;
  // Each render draws into its own view: a page still waiting for data when the user moves on
  // (the account page's profile on a slow link) finishes into its detached view, never over
  // the page navigated to.
  const view = h("div", {class: "view"});
  main.replaceChildren(view);
  let cleanup = null;
  try {
    cleanup = (await module.render(view, ctx)) || null;
  } catch (error) {
    replace(view, h("h1", {}, route ? route.title : "Error"),
      h("div", {role: "alert", class: "message error"}, describeError(error)));
  }
  if (renderId !== state.renderId) {
    try { if (cleanup) cleanup(); } catch { /* a stale page's cleanup never blocks the current one */ }
    return undefined;
  }
  state.cleanup = cleanup;
  focusHeading();
  return undefined;
}

/** After a navigation, move focus to the page's h1 so keyboard and screen-reader users start there. */
function focusHeading() {
  const heading = main.querySelector("h1");
  if (!heading) return;
  heading.setAttribute("tabindex", "-1");
  if (!main.contains(document.activeElement) || document.activeElement === main) {
    heading.focus({preventScroll: true});
  }
}

// Same-origin console links navigate in place; modified clicks (new tab, ...) are left alone.
document.addEventListener("click", (event) => {
  const link = event.target.closest ? event.target.closest("a[href]") : null;
  if (!link || event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey || link.target) return;
  const url = new URL(link.href, location.href);
  if (url.origin !== location.origin || !url.pathname.startsWith("/console")) return;
  event.preventDefault();
  navigate(url.pathname + url.search + url.hash);
});

window.addEventListener("popstate", () => render());

async function start() {
  installBoundary();
  onSessionEnded(sessionEnded);
  try {
    state.user = await restoreSession();
    if (state.user) state.permissions = await permissionsOf();
  } catch (error) {
    state.user = null;
    state.flash = {kind: "error", text: describeError(error)};
  }
  await render();
}

start();

