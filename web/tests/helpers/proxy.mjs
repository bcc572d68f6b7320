// A TCP proxy in front of a server, so a test can cut one browser's
// connections (the page and /ws go through it) while the server and the
// other members stay up.

import net from 'node:net';

export function startProxy(targetUrl) {
  const target = new URL(targetUrl);
  const sockets = new Set();
  let refusing = false;
  const server = net.createServer((client) => {
    if (refusing) {
      client.destroy();
      return;
    }
    const upstream = net.connect(Number(target.port), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {});
    }
    client.pipe(upstream);
    upstream.pipe(client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      resolve({
        url: `http://127.0.0.1:${server.address().port}`,
        /** Cut every open connection; with refuse=true also refuse new ones. */
        drop({ refuse = false } = {}) {
          refusing = refuse;
          for (const s of sockets) s.destroy();
        },
        accept() {
          refusing = false;
        },
        close() {
          for (const s of sockets) s.destroy();
          return new Promise((r) => server.close(() => r()));
        },
      });
    });
  });
}
