/**
 * Whether `error` is what `fetch` throws when no response arrived (connection
 * refused or reset, DNS, CORS, offline), as opposed to a bug or an abort.
 * Browsers word it differently; all throw a TypeError.
 * @param {unknown} error
 * @returns {boolean}
 */
export function isNetworkError(error) {
  if (!(error instanceof TypeError)) return false;
  const message = String(error.message).toLowerCase();
  return (
    message === "failed to fetch" || // Chromium
    message === "fetch failed" || // Node (undici)
    message.startsWith("networkerror") || // Firefox
    message === "load failed" || // Safari
    message.includes("network") ||
    message === "terminated"
  );
}
