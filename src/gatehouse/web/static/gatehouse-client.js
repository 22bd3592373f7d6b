/**
 * Gatehouse browser client (API.md §9): an ES module, no build step, no dependency.
 *
 *   import { createClient, installErrorBoundary } from "/static/gatehouse-client.js";
 *
 * This file only re-exports the public names; tests/js/exports.test.mjs locks them.
 * Types: gatehouse-client.d.ts. Guide: docs/browser.md.
 */
export { createClient } from "./client/core.js";
export { GatehouseError } from "./client/errors.js";
export { installErrorBoundary } from "./client/error-boundary.js";
