// The entry point's public names are locked: adding or removing one is a decision, made here.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";

const ENTRY = new URL("../../src/gatehouse/web/static/gatehouse-client.js", import.meta.url);

test("the entry point exports exactly createClient, GatehouseError and installErrorBoundary", async () => {
  const module = await import(ENTRY.href);
  assert.deepEqual(Object.keys(module).sort(), ["GatehouseError", "createClient", "installErrorBoundary"]);
});

test("the declarations file declares every exported name and no other value", async () => {
  const declarations = await readFile(new URL("../../src/gatehouse/web/static/gatehouse-client.d.ts", import.meta.url), "utf8");
  const declared = [...declarations.matchAll(/^export declare (?:function|class) (\w+)/gm)].map((m) => m[1]).sort();
  assert.deepEqual(declared, ["GatehouseError", "createClient", "installErrorBoundary"]);
});

test("the entry point only re-exports from ./client/", async () => {
  const source = await readFile(ENTRY, "utf8");
  const code = source.replace(/\/\*[\s\S]*?\*\//g, "").split("\n").filter((line) => line.trim() !== "");
  assert.ok(code.length > 0);
  for (const line of code) assert.match(line, /^export \{ \w+ \} from "\.\/client\/[\w-]+\.js";$/);
});
