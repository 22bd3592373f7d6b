#!/usr/bin/env node
// Copy the browser-side third-party code the console uses from node_modules into
// src/gatehouse/web/static/vendor/, with its licence, so the service ships it and nothing is
// fetched at run time (API.md §9: no CDN, no build step). Run `npm run vendor` after
// changing a pinned version in package.json; tests/js/vendor.test.mjs fails when the
// committed copy differs from what this script would write.

import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
export const VENDOR_DIR = join(ROOT, "src", "gatehouse", "web", "static", "vendor");

// qrcode-generator (MIT, Kazuhiko Arase): the account page draws the otpauth:// QR code locally.
// The package ships no LICENSE file; its licence is the MIT notice in the source header and
// the "license" field of its package.json, so the copy's LICENSE is written from those.
const QR_PACKAGE = join(ROOT, "node_modules", "qrcode-generator");

function mitLicense(pkg, copyright) {
  return `${pkg.name} ${pkg.version} (${pkg.repository.url.replace(/^git\+/, "")})
Vendored by scripts/vendor-web.mjs from node_modules/${pkg.name}/dist/qrcode.mjs, unchanged.

MIT License

${copyright}

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
`;
}

/** Every vendored file as {path (absolute), content (Buffer)}, computed from node_modules. */
export function vendoredFiles() {
  const pkg = JSON.parse(readFileSync(join(QR_PACKAGE, "package.json"), "utf8"));
  if (pkg.license !== "MIT") throw new Error(`${pkg.name} is no longer MIT licensed (${pkg.license})`);
  const source = readFileSync(join(QR_PACKAGE, "dist", "qrcode.mjs"));
  const copyright = /Copyright \(c\) [^\n]+/.exec(source.toString("utf8"));
  if (!copyright) throw new Error(`${pkg.name}: no copyright line in dist/qrcode.mjs`);
  const dir = join(VENDOR_DIR, "qrcode-generator");
  return [
    {path: join(dir, "qrcode.mjs"), content: source},
    {path: join(dir, "LICENSE"), content: Buffer.from(mitLicense(pkg, copyright[0].trim()), "utf8")},
  ];
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  for (const file of vendoredFiles()) {
    mkdirSync(dirname(file.path), {recursive: true});
    writeFileSync(file.path, file.content);
    console.log(`wrote ${relative(ROOT, file.path)}`);
  }
}
