// The k6 scenario's MessagePack codec: exactly what the Arthas wire protocol
// needs. The web client uses @msgpack/msgpack (web/js/msgpack.js), which
// k6's JavaScript runtime cannot load (its decoder has `for await` loops,
// which k6 does not parse), so the load test keeps this small codec of its
// own; msgpack.test.mjs beside it holds its byte vectors (node --test).
//
// Encodes: null/undefined -> nil, booleans, integers (smallest width that
// fits; BigInt for 64-bit), non-integer numbers -> float64, strings -> str,
// Uint8Array/ArrayBuffer -> bin, arrays, plain objects and Maps -> map.
// Decodes: nil, bool, every int width, float32/float64, str, bin, array,
// map (to a plain object with string keys). Ext types are rejected.
//
// Decoded 64-bit integers become Numbers when they are safe integers and
// BigInts otherwise. Decoded maps never touch Object.prototype (keys such as
// "__proto__" become own properties).

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder('utf-8', { fatal: true });

export class MsgpackError extends Error {
  constructor(message) {
    super(message);
    this.name = 'MsgpackError';
  }
}

// ---------------------------------------------------------------- encoder

class Writer {
  constructor(initial = 256) {
    this.buf = new Uint8Array(initial);
    this.view = new DataView(this.buf.buffer);
    this.pos = 0;
  }

  ensure(n) {
    const need = this.pos + n;
    if (need <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < need) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  u8(v) { this.ensure(1); this.view.setUint8(this.pos, v); this.pos += 1; }
  u16(v) { this.ensure(2); this.view.setUint16(this.pos, v); this.pos += 2; }
  u32(v) { this.ensure(4); this.view.setUint32(this.pos, v); this.pos += 4; }
  u64(v) { this.ensure(8); this.view.setBigUint64(this.pos, v); this.pos += 8; }
  i8(v) { this.ensure(1); this.view.setInt8(this.pos, v); this.pos += 1; }
  i16(v) { this.ensure(2); this.view.setInt16(this.pos, v); this.pos += 2; }
  i32(v) { this.ensure(4); this.view.setInt32(this.pos, v); this.pos += 4; }
  i64(v) { this.ensure(8); this.view.setBigInt64(this.pos, v); this.pos += 8; }
  f64(v) { this.ensure(8); this.view.setFloat64(this.pos, v); this.pos += 8; }
  bytes(b) { this.ensure(b.length); this.buf.set(b, this.pos); this.pos += b.length; }

  result() { return this.buf.slice(0, this.pos); }
}

function encodeInt(w, v) {
  // v is a safe integer Number or a BigInt
  if (typeof v === 'number') {
    if (v >= 0) {
      if (v < 0x80) return w.u8(v);
      if (v <= 0xff) { w.u8(0xcc); return w.u8(v); }
      if (v <= 0xffff) { w.u8(0xcd); return w.u16(v); }
      if (v <= 0xffffffff) { w.u8(0xce); return w.u32(v); }
      w.u8(0xcf); return w.u64(BigInt(v));
    }
    if (v >= -32) return w.i8(v);
    if (v >= -0x80) { w.u8(0xd0); return w.i8(v); }
    if (v >= -0x8000) { w.u8(0xd1); return w.i16(v); }
    if (v >= -0x80000000) { w.u8(0xd2); return w.i32(v); }
    w.u8(0xd3); return w.i64(BigInt(v));
  }
  // BigInt
  if (v >= 0n) {
    if (v <= 0xffffffffn) return encodeInt(w, Number(v));
    if (v > 0xffffffffffffffffn) throw new MsgpackError('integer too large');
    w.u8(0xcf); return w.u64(v);
  }
  if (v >= -0x80000000n) return encodeInt(w, Number(v));
  if (v < -0x8000000000000000n) throw new MsgpackError('integer too small');
  w.u8(0xd3); return w.i64(v);
}

function encodeStr(w, s) {
  const b = textEncoder.encode(s);
  const n = b.length;
  if (n < 32) w.u8(0xa0 | n);
  else if (n <= 0xff) { w.u8(0xd9); w.u8(n); }
  else if (n <= 0xffff) { w.u8(0xda); w.u16(n); }
  else { w.u8(0xdb); w.u32(n); }
  w.bytes(b);
}

function encodeBin(w, b) {
  const n = b.length;
  if (n <= 0xff) { w.u8(0xc4); w.u8(n); }
  else if (n <= 0xffff) { w.u8(0xc5); w.u16(n); }
  else { w.u8(0xc6); w.u32(n); }
  w.bytes(b);
}

function encodeMapHeader(w, n) {
  if (n < 16) w.u8(0x80 | n);
  else if (n <= 0xffff) { w.u8(0xde); w.u16(n); }
  else { w.u8(0xdf); w.u32(n); }
}

function encodeValue(w, v, depth) {
  if (depth > 64) throw new MsgpackError('nesting too deep');
  if (v === null || v === undefined) return w.u8(0xc0);
  switch (typeof v) {
    case 'boolean':
      return w.u8(v ? 0xc3 : 0xc2);
    case 'number':
      if (Number.isSafeInteger(v)) return encodeInt(w, v);
      w.u8(0xcb); return w.f64(v);
    case 'bigint':
      return encodeInt(w, v);
    case 'string':
      return encodeStr(w, v);
    case 'object':
      break;
    default:
      throw new MsgpackError(`cannot encode ${typeof v}`);
  }
  if (v instanceof Uint8Array) return encodeBin(w, v);
  if (v instanceof ArrayBuffer) return encodeBin(w, new Uint8Array(v));
  if (ArrayBuffer.isView(v)) return encodeBin(w, new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
  if (Array.isArray(v)) {
    const n = v.length;
    if (n < 16) w.u8(0x90 | n);
    else if (n <= 0xffff) { w.u8(0xdc); w.u16(n); }
    else { w.u8(0xdd); w.u32(n); }
    for (const item of v) encodeValue(w, item, depth + 1);
    return undefined;
  }
  if (v instanceof Map) {
    encodeMapHeader(w, v.size);
    for (const [k, item] of v) {
      encodeValue(w, k, depth + 1);
      encodeValue(w, item, depth + 1);
    }
    return undefined;
  }
  // plain object: skip undefined-valued keys (like JSON)
  const keys = Object.keys(v).filter((k) => v[k] !== undefined);
  encodeMapHeader(w, keys.length);
  for (const k of keys) {
    encodeStr(w, k);
    encodeValue(w, v[k], depth + 1);
  }
  return undefined;
}

/** Encode a JavaScript value to MessagePack bytes. */
export function encode(value) {
  const w = new Writer();
  encodeValue(w, value, 0);
  return w.result();
}

// ---------------------------------------------------------------- decoder

class Reader {
  constructor(bytes) {
    this.buf = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = 0;
  }

  need(n) {
    if (this.pos + n > this.buf.length) throw new MsgpackError('unexpected end of data');
  }

  u8() { this.need(1); return this.view.getUint8(this.pos++); }
  u16() { this.need(2); const v = this.view.getUint16(this.pos); this.pos += 2; return v; }
  u32() { this.need(4); const v = this.view.getUint32(this.pos); this.pos += 4; return v; }
  u64() { this.need(8); const v = this.view.getBigUint64(this.pos); this.pos += 8; return bigToNum(v); }
  i8() { this.need(1); return this.view.getInt8(this.pos++); }
  i16() { this.need(2); const v = this.view.getInt16(this.pos); this.pos += 2; return v; }
  i32() { this.need(4); const v = this.view.getInt32(this.pos); this.pos += 4; return v; }
  i64() { this.need(8); const v = this.view.getBigInt64(this.pos); this.pos += 8; return bigToNum(v); }
  f32() { this.need(4); const v = this.view.getFloat32(this.pos); this.pos += 4; return v; }
  f64() { this.need(8); const v = this.view.getFloat64(this.pos); this.pos += 8; return v; }

  bytes(n) {
    this.need(n);
    const b = this.buf.slice(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }

  str(n) {
    this.need(n);
    let s;
    try {
      s = textDecoder.decode(this.buf.subarray(this.pos, this.pos + n));
    } catch {
      throw new MsgpackError('invalid UTF-8 in str');
    }
    this.pos += n;
    return s;
  }
}

function bigToNum(v) {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

function decodeArray(r, n, depth) {
  // every element takes at least one byte: reject absurd lengths early
  r.need(n);
  const out = new Array(n);
  for (let i = 0; i < n; i++) out[i] = decodeValue(r, depth + 1);
  return out;
}

function decodeMap(r, n, depth) {
  r.need(n * 2);
  const out = {};
  for (let i = 0; i < n; i++) {
    const k = decodeValue(r, depth + 1);
    const v = decodeValue(r, depth + 1);
    const key = typeof k === 'string' ? k : String(k);
    Object.defineProperty(out, key, { value: v, enumerable: true, writable: true, configurable: true });
  }
  return out;
}

function decodeValue(r, depth) {
  if (depth > 64) throw new MsgpackError('nesting too deep');
  const b = r.u8();
  if (b < 0x80) return b; // positive fixint
  if (b >= 0xe0) return b - 0x100; // negative fixint
  if ((b & 0xf0) === 0x80) return decodeMap(r, b & 0x0f, depth);
  if ((b & 0xf0) === 0x90) return decodeArray(r, b & 0x0f, depth);
  if ((b & 0xe0) === 0xa0) return r.str(b & 0x1f);
  switch (b) {
    case 0xc0: return null;
    case 0xc2: return false;
    case 0xc3: return true;
    case 0xc4: return r.bytes(r.u8());
    case 0xc5: return r.bytes(r.u16());
    case 0xc6: return r.bytes(r.u32());
    case 0xca: return r.f32();
    case 0xcb: return r.f64();
    case 0xcc: return r.u8();
    case 0xcd: return r.u16();
    case 0xce: return r.u32();
    case 0xcf: return r.u64();
    case 0xd0: return r.i8();
    case 0xd1: return r.i16();
    case 0xd2: return r.i32();
    case 0xd3: return r.i64();
    case 0xd9: return r.str(r.u8());
    case 0xda: return r.str(r.u16());
    case 0xdb: return r.str(r.u32());
    case 0xdc: return decodeArray(r, r.u16(), depth);
    case 0xdd: return decodeArray(r, r.u32(), depth);
    case 0xde: return decodeMap(r, r.u16(), depth);
    case 0xdf: return decodeMap(r, r.u32(), depth);
    default:
      throw new MsgpackError(`unsupported type byte 0x${b.toString(16)}`);
  }
}

/** Decode one MessagePack value; trailing bytes are an error. */
export function decode(input) {
  let bytes;
  if (input instanceof Uint8Array) bytes = input;
  else if (input instanceof ArrayBuffer) bytes = new Uint8Array(input);
  else if (ArrayBuffer.isView(input)) bytes = new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
  else throw new MsgpackError('decode expects bytes');
  const r = new Reader(bytes);
  const v = decodeValue(r, 0);
  if (r.pos !== bytes.length) throw new MsgpackError('trailing bytes after value');
  return v;
}
