// The client's one runtime dependency, @msgpack/msgpack, is served from
// vendor/msgpack-<version>/: the exact ES-module files of the npm package
// pinned in package-lock.json, and its LICENSE. They are committed, so a
// fresh `cargo build` embeds them without npm; tests/unit/vendor.test.mjs
// fails when they differ from the installed package.
//
// After changing the version in package.json (exact, no range):
//   npm install --prefix web && npm run vendor --prefix web
// then point js/msgpack.js at the new folder.

import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** The web/ directory. */
export const WEB = join(dirname(fileURLToPath(import.meta.url)), '..');

/** The vendored package: its npm name, the folder of its ES-module build, and our folder's prefix. */
export const MSGPACK = Object.freeze({ name: '@msgpack/msgpack', build: 'dist.esm', prefix: 'msgpack' });

/** The version of `pkg` that package-lock.json pins. */
export function lockedVersion(pkg) {
  const lock = JSON.parse(readFileSync(join(WEB, 'package-lock.json'), 'utf8'));
  const entry = lock.packages[`node_modules/${pkg.name}`];
  if (!entry) throw new Error(`${pkg.name} is not in web/package-lock.json`);
  return entry.version;
}

/** Where `version` of `pkg` is vendored, relative to web/ (and as served: /vendor/…). */
export function vendorDir(pkg, version) {
  return join('vendor', `${pkg.prefix}-${version}`);
}

/** The installed package's folder. */
export function installedDir(pkg) {
  return join(WEB, 'node_modules', pkg.name);
}

/**
 * The files to vendor as [from, to]: `from` relative to the installed
 * package, `to` relative to the vendor folder. The build's .mjs modules
 * (their layout kept, so their relative imports resolve) and the LICENSE.
 */
export function vendoredFiles(pkg) {
  const root = installedDir(pkg);
  const walk = (dir) => readdirSync(join(root, pkg.build, dir), { withFileTypes: true })
    .flatMap((entry) => {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) return walk(path);
      return entry.name.endsWith('.mjs') ? [[join(pkg.build, path), path]] : [];
    });
  return [['LICENSE', 'LICENSE'], ...walk('')].sort((a, b) => a[1].localeCompare(b[1]));
}

/** Replaces every vendored version of `pkg` by the copy of the installed, pinned one. */
export function vendor(pkg) {
  const version = lockedVersion(pkg);
  const installed = JSON.parse(readFileSync(join(installedDir(pkg), 'package.json'), 'utf8')).version;
  if (installed !== version) {
    throw new Error(`node_modules has ${pkg.name} ${installed}, the lock file ${version}: run npm ci --prefix web first`);
  }
  const vendorRoot = join(WEB, 'vendor');
  mkdirSync(vendorRoot, { recursive: true });
  for (const entry of readdirSync(vendorRoot)) {
    if (entry.startsWith(`${pkg.prefix}-`)) rmSync(join(vendorRoot, entry), { recursive: true });
  }
  const target = join(WEB, vendorDir(pkg, version));
  for (const [from, to] of vendoredFiles(pkg)) {
    mkdirSync(dirname(join(target, to)), { recursive: true });
    copyFileSync(join(installedDir(pkg), from), join(target, to));
  }
  return target;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  console.log(`vendored ${MSGPACK.name} into ${vendor(MSGPACK)}`);
}
