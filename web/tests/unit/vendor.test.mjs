import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { MSGPACK, WEB, installedDir, lockedVersion, vendorDir, vendoredFiles } from '../../tools/vendor.mjs';

const version = lockedVersion(MSGPACK);
const vendored = join(WEB, vendorDir(MSGPACK, version));
const REFRESH = 'npm ci --prefix web && npm run vendor --prefix web';

function filesUnder(dir) {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => relative(dir, join(e.parentPath ?? e.path, e.name)))
    .sort((a, b) => a.localeCompare(b));
}

test('package.json pins the exact version the lock file holds', () => {
  const pkg = JSON.parse(readFileSync(join(WEB, 'package.json'), 'utf8'));
  assert.equal(pkg.dependencies[MSGPACK.name], version);
});

test('the installed package is the locked version', () => {
  const installed = join(installedDir(MSGPACK), 'package.json');
  assert.ok(existsSync(installed), 'web/node_modules is missing: npm ci --prefix web');
  assert.equal(JSON.parse(readFileSync(installed, 'utf8')).version, version, 'stale web/node_modules: npm ci --prefix web');
});

test('the vendored files are the installed package files, byte for byte', () => {
  const expected = vendoredFiles(MSGPACK);
  assert.ok(expected.length > 10, 'the package build has its modules');
  assert.deepEqual(filesUnder(vendored), expected.map(([, to]) => to), `vendor/ differs from the package: ${REFRESH}`);
  for (const [from, to] of expected) {
    const a = readFileSync(join(installedDir(MSGPACK), from));
    const b = readFileSync(join(vendored, to));
    assert.ok(a.equals(b), `${to} differs from ${MSGPACK.name}@${version}: ${REFRESH}`);
  }
});

test('only the locked version is vendored', () => {
  const versions = readdirSync(join(WEB, 'vendor')).filter((name) => name.startsWith(`${MSGPACK.prefix}-`));
  assert.deepEqual(versions, [`${MSGPACK.prefix}-${version}`]);
});

test('the codec imports the vendored version', () => {
  const source = readFileSync(join(WEB, 'js', 'msgpack.js'), 'utf8');
  const imports = [...source.matchAll(/from '([^']+)'/g)].map((m) => m[1]);
  assert.deepEqual(imports, [`../${vendorDir(MSGPACK, version)}/index.mjs`]);
});
