// Wire protocol v1.2.2: message types, limits and readable error texts.

import { encode, decode } from './msgpack.js';

export const C = Object.freeze({
  CREATE_ROOM: 0x01,
  JOIN_ROOM: 0x02,
  SEND_MESSAGE: 0x03,
  LEAVE_ROOM: 0x04,
  TYPING: 0x05,
  PONG: 0x06,
  SEND_REACTION: 0x07,
  FILE_META: 0x08,
  FILE_CHUNK: 0x09,
  FILE_COMPLETE: 0x0a,
  FILE_CANCEL: 0x0b,
  FILE_ACK: 0x0c,
  // Extension (docs/PROTOCOL.md §0): the room owner, directed messages.
  KICK: 0x40,
  SEND_DIRECT: 0x41,
  SET_ROOM_SECRET: 0x42,
});

export const S = Object.freeze({
  ROOM_CREATED: 0x10,
  ROOM_JOINED: 0x11,
  MEMBER_JOINED: 0x12,
  MEMBER_LEFT: 0x13,
  RELAY_MESSAGE: 0x14,
  MEMBER_TYPING: 0x15,
  ROOM_CLOSED: 0x16,
  ERROR: 0x17,
  PING: 0x18,
  RELAY_REACTION: 0x19,
  RELAY_FILE_META: 0x1a,
  RELAY_FILE_CHUNK: 0x1b,
  RELAY_FILE_COMPLETE: 0x1c,
  RELAY_FILE_CANCEL: 0x1d,
  RELAY_FILE_ACK: 0x1e,
  MATCH_ERROR: 0x2b,
  RELAY_DIRECT: 0x50,
  ROOM_SECRET_SET: 0x51,
});

export const LIMITS = Object.freeze({
  NAME_MAX_RUNES: 20,
  CHAT_PER_WINDOW: 10,
  CHAT_WINDOW_MS: 10_000,
  MAX_FILE_BYTES: 5 * 1024 * 1024,
  CHUNK_BYTES: 64 * 1024,
  MAX_FRAME_BYTES: 102_400,
  MAX_EXPIRY_SECS: 604_800,
  FILE_TIMEOUT_MS: 60_000,
});

export const SYSTEM_SENDER = 'system';
export const EXPIRY_WARNING_SENTINEL = '__SYSTEM_EXPIRY_WARNING__';

const ERROR_TEXT = {
  E001: 'Room not found. It may have expired or everyone left.',
  E002: 'This room is full.',
  E003: 'You are not in a room (or the room no longer exists).',
  E004: 'Too many requests. Please slow down and try again shortly.',
  E005: 'The server rejected a message as invalid.',
  E006: 'Wrong password.',
  E007: 'This room has expired.',
  E008: 'Only the room owner can do that.',
  E010: 'The public directory is full; the room was created as private.',
  E011: 'The public listing was refused; the room was created as private.',
  M001: 'Random match is disabled on this server.',
};

/** E005 texts of the relay's extensions that are not about invalid input. */
const E005_TEXT = {
  'service temporarily unavailable, retry': 'The server is briefly unavailable. Please try again.',
  'message may not have reached every member, retry':
    'Your last message may not have reached every member (the server was recovering). Send it again if it matters.',
};

/** A readable sentence for a server error {code, msg}. */
export function errorText(code, msg) {
  const base = ERROR_TEXT[code];
  if (code === 'E005' && Object.hasOwn(E005_TEXT, msg)) return E005_TEXT[msg];
  if (code === 'E004' && typeof msg === 'string' && /password/i.test(msg)) {
    return 'Too many wrong passwords. Please try again later.';
  }
  if ((code === 'E005' || code === 'E011') && typeof msg === 'string' && msg) return `${base} (${msg})`;
  if (base) return base;
  return typeof msg === 'string' && msg ? msg : `Server error ${code || ''}`.trim();
}

/** Envelope bytes for a client message. */
export function encodeEnvelope(type, data) {
  return encode({ type, data: data ?? {} });
}

/** Decode an envelope; returns {type, data} or throws. */
export function decodeEnvelope(bytes) {
  const env = decode(bytes);
  if (!env || typeof env !== 'object' || Array.isArray(env) || typeof env.type !== 'number') {
    throw new Error('not an envelope');
  }
  return { type: env.type, data: env.data };
}

/** Name rule of the server: 1–20 Unicode code points, not empty. */
export function validName(name) {
  if (typeof name !== 'string' || name.length === 0) return false;
  return [...name].length <= LIMITS.NAME_MAX_RUNES;
}
