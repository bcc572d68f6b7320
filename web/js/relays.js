// Which relay the page's WebSocket goes to.
//
// A relay that serves the page, or an Ingress that routes /ws of the page's
// host to the relays, needs nothing: the socket goes to this origin's /ws.
// A gateway reached on its own address, with the relays elsewhere, writes
// their ws(s):// URLs (space-separated) into <meta name="arthas-relays">;
// each connection attempt then picks one of them at random, so clients
// spread over the relays and a reconnect can land on another one.

import { sameOriginWsUrl } from './connection.js';

/** The relay URLs the page was given (possibly none). */
export function configuredRelayUrls(doc = globalThis.document) {
  const meta = doc && doc.querySelector ? doc.querySelector('meta[name="arthas-relays"]') : null;
  const content = meta ? meta.getAttribute('content') || '' : '';
  return content.split(/\s+/).filter((u) => /^wss?:\/\/\S+$/.test(u));
}

/**
 * A function giving the URL for the next connection attempt: one of the
 * configured relays at random, else this origin's /ws.
 */
export function relayUrlChooser(doc = globalThis.document, loc = globalThis.location, random = Math.random) {
  const urls = configuredRelayUrls(doc);
  if (urls.length === 0) return () => sameOriginWsUrl(loc);
  return () => urls[Math.min(urls.length - 1, Math.floor(random() * urls.length))];
}
