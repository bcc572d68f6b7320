// A test CA and a server certificate for 127.0.0.1 it signed, made with the
// openssl command line in a temporary directory, and the SPKI pin Chromium
// is told to trust (--ignore-certificate-errors-spki-list): the browser test
// runs once over https/wss against the real binary with TLS in-process.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

function openssl(dir, args, input) {
  return execFileSync('openssl', args, { cwd: dir, input, stdio: ['pipe', 'pipe', 'pipe'] });
}

/** {dir, ca, cert, key, spki}: PEM file paths and the leaf's base64 SHA-256 SPKI pin. */
export function makeTestCertificates() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'arthas-web-tls-'));
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  openssl(dir, ['req', '-x509', ...ec, '-days', '2', '-subj', '/CN=arthas web test CA', '-keyout', 'ca.key', '-out', 'ca.crt']);
  openssl(dir, ['req', ...ec, '-subj', '/CN=127.0.0.1', '-keyout', 'tls.key', '-out', 'tls.csr']);
  fs.writeFileSync(path.join(dir, 'ext.cnf'),
    'basicConstraints=critical,CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  openssl(dir, ['x509', '-req', '-in', 'tls.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial',
    '-days', '2', '-extfile', 'ext.cnf', '-out', 'leaf.crt']);
  const leaf = fs.readFileSync(path.join(dir, 'leaf.crt'));
  fs.writeFileSync(path.join(dir, 'tls.crt'), Buffer.concat([leaf, fs.readFileSync(path.join(dir, 'ca.crt'))]));
  const publicKey = openssl(dir, ['x509', '-pubkey', '-noout'], leaf);
  const der = openssl(dir, ['pkey', '-pubin', '-outform', 'der'], publicKey);
  const spki = openssl(dir, ['dgst', '-sha256', '-binary'], der).toString('base64');
  return {
    dir,
    ca: path.join(dir, 'ca.crt'),
    cert: path.join(dir, 'tls.crt'),
    key: path.join(dir, 'tls.key'),
    spki,
    remove() {
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
