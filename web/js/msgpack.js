// MessagePack as the Arthas wire uses it: @msgpack/msgpack, served from
// vendor/ (the exact ES-module files of the version package-lock.json pins;
// tools/vendor.mjs copies them, tests/unit/vendor.test.mjs checks them),
// with these settings:
//
// - 64-bit integers decode exactly: the server writes every integer as an
//   i64 (its times, unix milliseconds, need more than 32 bits). They become
//   Numbers when they are safe integers (everything the protocol carries),
//   else BigInts, which the client's `typeof … === 'number'` checks refuse
//   instead of using a rounded value. Numbers encode in the smallest integer
//   width (64-bit ones too) or as float64; BigInts are not encoded (nothing
//   the client sends needs more than 53 bits).
// - Ext types (timestamps too) are not part of the protocol: refused.
// - Decoded maps are plain objects whose keys never reach Object.prototype
//   (the library refuses a "__proto__" key).
// - Keys whose value is undefined are left out, as JSON.stringify does.
// - Nesting deeper than MAX_DEPTH is refused both ways (decoding itself does
//   not recurse, so a hostile frame cannot exhaust the stack).
// - A str with invalid UTF-8 decodes leniently (the library's choice); the
//   server only relays strings it decoded as UTF-8.

import { Decoder, DecodeError, Encoder } from '../vendor/msgpack-3.1.3/index.mjs';

/** Deepest nesting of arrays and maps accepted, both ways. */
export const MAX_DEPTH = 64;

const MIN_SAFE = BigInt(Number.MIN_SAFE_INTEGER);
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** An extension codec that knows no ext type. */
const NO_EXTENSIONS = {
  tryToEncode: () => null,
  decode: (_data, type) => {
    throw new DecodeError(`ext type ${type} is not part of the protocol`);
  },
};

// useBigInt64 stays off for encoding: on, the library writes Numbers beyond 32 bits as floats.
const encoder = new Encoder({ extensionCodec: NO_EXTENSIONS, ignoreUndefined: true, maxDepth: MAX_DEPTH });
const decoder = new Decoder({ extensionCodec: NO_EXTENSIONS, useBigInt64: true });

const narrow = (v) => (v >= MIN_SAFE && v <= MAX_SAFE ? Number(v) : v);

/**
 * Turns the decoded BigInts that fit a Number into Numbers, in place, and
 * refuses nesting beyond MAX_DEPTH. Iterative: the depth is checked before
 * anything recurses.
 */
function settle(root) {
  if (typeof root === 'bigint') return narrow(root);
  const stack = [[root, 0]];
  while (stack.length) {
    const [node, depth] = stack.pop();
    if (node === null || typeof node !== 'object' || ArrayBuffer.isView(node)) continue;
    if (depth >= MAX_DEPTH) throw new DecodeError('nesting too deep');
    for (const key of Object.keys(node)) {
      const v = node[key];
      if (typeof v === 'bigint') node[key] = narrow(v);
      else if (v !== null && typeof v === 'object') stack.push([v, depth + 1]);
    }
  }
  return root;
}

/** MessagePack bytes of a value (a fresh Uint8Array of exactly those bytes). */
export function encode(value) {
  return encoder.encode(value);
}

/**
 * The one value in `bytes` (an ArrayBuffer or a view of one); trailing bytes
 * are an error. bin values are views into `bytes`, not copies.
 */
export function decode(bytes) {
  if (!(bytes instanceof ArrayBuffer || ArrayBuffer.isView(bytes))) throw new TypeError('decode expects bytes');
  return settle(decoder.decode(bytes));
}
