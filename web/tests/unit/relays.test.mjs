import { test } from 'node:test';
import assert from 'node:assert/strict';
import { configuredRelayUrls, relayUrlChooser } from '../../js/relays.js';

function doc(content) {
  return {
    querySelector: (sel) => (sel === 'meta[name="arthas-relays"]' && content !== null
      ? { getAttribute: () => content }
      : null),
  };
}
const loc = { protocol: 'https:', host: 'chat.example.com' };

test('without relay URLs the socket goes to this origin', () => {
  assert.equal(relayUrlChooser(doc(null), loc)(), 'wss://chat.example.com/ws');
  assert.equal(relayUrlChooser(doc(''), { protocol: 'http:', host: '127.0.0.1:8081' })(), 'ws://127.0.0.1:8081/ws');
});

test('configured relays are picked at random for each attempt', () => {
  const d = doc(' ws://127.0.0.1:8090/ws  ws://127.0.0.1:8091/ws ');
  assert.deepEqual(configuredRelayUrls(d), ['ws://127.0.0.1:8090/ws', 'ws://127.0.0.1:8091/ws']);
  const rolls = [0, 0.99, 0.5];
  const choose = relayUrlChooser(d, loc, () => rolls.shift());
  assert.equal(choose(), 'ws://127.0.0.1:8090/ws');
  assert.equal(choose(), 'ws://127.0.0.1:8091/ws');
  assert.equal(choose(), 'ws://127.0.0.1:8091/ws');
});

test('anything but ws(s) URLs in the list is ignored', () => {
  assert.deepEqual(configuredRelayUrls(doc('javascript:alert(1) http://x/ws wss://r.example/ws')), ['wss://r.example/ws']);
});
