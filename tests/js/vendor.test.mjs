// The vendored browser libraries (src/gatehouse/web/static/vendor/) are exactly what
// `npm run vendor` writes from the versions pinned in package.json, and they work.

import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";

import { ROOT, VENDOR_DIR, vendoredFiles } from "../../scripts/vendor-web.mjs";

test("every vendored file equals what `npm run vendor` writes from node_modules (not stale)", () => {
  for (const file of vendoredFiles()) {
    const name = relative(ROOT, file.path);
    assert.ok(existsSync(file.path), `${name} is missing: run \`npm run vendor\` and commit it`);
    assert.ok(readFileSync(file.path).equals(file.content),
      `${name} differs from node_modules: run \`npm run vendor\` and commit it`);
  }
});

test("the installed qrcode-generator is the exact version package.json and the lock pin", () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8"));
  const lock = JSON.parse(readFileSync(join(ROOT, "package-lock.json"), "utf8"));
  const installed = JSON.parse(readFileSync(join(ROOT, "node_modules", "qrcode-generator", "package.json"), "utf8"));
  const pinned = pkg.devDependencies["qrcode-generator"];
  assert.match(pinned, /^\d+\.\d+\.\d+$/, "pinned exactly (npm install --save-exact)");
  assert.equal(lock.packages["node_modules/qrcode-generator"].version, pinned);
  assert.equal(installed.version, pinned);
  assert.equal(installed.license, "MIT");
});

test("the vendored encoder builds a byte-mode, level M QR code for an otpauth URI", async () => {
  const { default: qrcode } = await import(join(VENDOR_DIR, "qrcode-generator", "qrcode.mjs"));
  const uri = "otpauth://totp/Gatehouse:someone.with.a.long.name%40example.com?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=Gatehouse";
  const qr = qrcode(0, "M");
  qr.addData(uri, "Byte");
  qr.make();
  const size = qr.getModuleCount();
  assert.equal((size - 17) % 4, 0);
  assert.ok(size >= 41 && size <= 57, `version ${(size - 17) / 4} for a ${uri.length}-byte URI`);
  // The three finder patterns: a dark 7x7 ring around a light ring around a dark 3x3 centre.
  for (const [r0, c0] of [[0, 0], [0, size - 7], [size - 7, 0]]) {
    for (let r = 0; r < 7; r += 1) {
      for (let c = 0; c < 7; c += 1) {
        const ring = Math.max(Math.abs(r - 3), Math.abs(c - 3));
        assert.equal(qr.isDark(r0 + r, c0 + c), ring !== 2, `finder at ${r0},${c0} cell ${r},${c}`);
      }
    }
  }
});
