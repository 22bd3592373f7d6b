// Email links carry their token in the fragment (#token=...), so it never reaches a server
// log or a Referer. Read it once, then drop it from the address bar and the history.

export function takeToken() {
  const params = new URLSearchParams(location.hash.replace(/^#/, ""));
  const token = params.get("token");
  if (location.hash) history.replaceState(history.state, "", location.pathname + location.search);
  return token;
}
