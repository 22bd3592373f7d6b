/**
 * CSRF in cookie mode (API.md §3): every unsafe request carries header
 * X-CSRF-Token equal to the readable gh_csrf cookie. Bearer requests need none.
 */

export const CSRF_COOKIE = "gh_csrf";
export const UNSAFE_METHODS = Object.freeze(["POST", "PUT", "PATCH", "DELETE"]);

/**
 * The value of cookie `name` in a `document.cookie` string, or null.
 * @param {string} cookies
 * @param {string} name
 * @returns {string | null}
 */
export function readCookie(cookies, name) {
  for (const part of cookies.split(";")) {
    const index = part.indexOf("=");
    if (index < 0) continue;
    if (part.slice(0, index).trim() === name) {
      const value = part.slice(index + 1).trim();
      try {
        return decodeURIComponent(value);
      } catch {
        return value;
      }
    }
  }
  return null;
}

/**
 * Adds X-CSRF-Token to an unsafe cookie-mode request when the cookie is there.
 * @param {Headers} headers
 * @param {string} method
 * @param {string | null} csrf the gh_csrf value, or null
 */
export function applyCsrf(headers, method, csrf) {
  if (csrf && UNSAFE_METHODS.includes(method.toUpperCase())) {
    headers.set("X-CSRF-Token", csrf);
  }
}
