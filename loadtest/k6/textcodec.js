// k6's JavaScript runtime has no TextEncoder/TextDecoder; the scenario's
// MessagePack codec (msgpack.mjs) needs them. A small, strict UTF-8 pair, installed only
// when missing (import this module before the codec).

class Utf8Encoder {
  encode(text = '') {
    const out = [];
    for (const ch of String(text)) {
      let c = ch.codePointAt(0);
      if (c < 0x80) out.push(c);
      else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 63));
      else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
      else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    }
    return new Uint8Array(out);
  }
}

class Utf8Decoder {
  decode(bytes = new Uint8Array(0)) {
    const b = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
    let s = '';
    for (let i = 0; i < b.length; ) {
      const x = b[i];
      let c;
      let n;
      if (x < 0x80) { c = x; n = 1; }
      else if ((x & 0xe0) === 0xc0) { c = x & 31; n = 2; }
      else if ((x & 0xf0) === 0xe0) { c = x & 15; n = 3; }
      else if ((x & 0xf8) === 0xf0) { c = x & 7; n = 4; }
      else throw new TypeError('invalid UTF-8');
      if (i + n > b.length) throw new TypeError('invalid UTF-8');
      for (let k = 1; k < n; k++) {
        if ((b[i + k] & 0xc0) !== 0x80) throw new TypeError('invalid UTF-8');
        c = (c << 6) | (b[i + k] & 63);
      }
      s += String.fromCodePoint(c);
      i += n;
    }
    return s;
  }
}

if (typeof globalThis.TextEncoder === 'undefined') globalThis.TextEncoder = Utf8Encoder;
if (typeof globalThis.TextDecoder === 'undefined') globalThis.TextDecoder = Utf8Decoder;
