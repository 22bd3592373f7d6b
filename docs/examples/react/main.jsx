/**
 * The entry point: the client module comes from the Gatehouse service itself, so this bundle
 * never carries a stale copy. Bundle with esbuild (the import stays a URL import):
 *
 *   npx esbuild docs/examples/react/main.jsx --bundle --format=esm --jsx=automatic \
 *     --external:/static/* --define:process.env.NODE_ENV='"production"' --outfile=app.js
 *
 * Next.js, whose bundler resolves imports itself: see GatehouseProvider.jsx and docs/migration.md.
 */
import { createRoot } from "react-dom/client";
import { createClient } from "/static/gatehouse-client.js";
import { GatehouseProvider } from "./GatehouseProvider.jsx";
import { App } from "./App.jsx";

createRoot(document.getElementById("root")).render(
  <GatehouseProvider createClient={createClient}>
    <App />
  </GatehouseProvider>,
);
