import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatDuration, formatRemaining } from '../../js/format.js';

test('a message lifetime is written in its largest unit', () => {
  const cases = [[30, '30 s'], [59, '59 s'], [60, '1 min'], [300, '5 min'], [3600, '1 h'], [5400, '2 h'], [86400, '1 d'], [604800, '7 d']];
  for (const [secs, text] of cases) assert.equal(formatDuration(secs), text, String(secs));
});

test('the expiry countdown shows minutes and seconds in the last hour', () => {
  assert.equal(formatRemaining(299), 'Expires in 4:59');
  assert.equal(formatRemaining(5), 'Expires in 0:05');
  assert.equal(formatRemaining(3599), 'Expires in 59:59');
});

test('the expiry countdown shows hours and minutes within a day', () => {
  assert.equal(formatRemaining(3600), 'Expires in 1h 00m');
  assert.equal(formatRemaining(86399), 'Expires in 23h 59m');
});

test('the expiry countdown shows days and hours beyond a day', () => {
  assert.equal(formatRemaining(86400), 'Expires in 1d 0h');
  assert.equal(formatRemaining(604800 - 1), 'Expires in 6d 23h');
});

test('an expiry now or past reads as expiring now', () => {
  assert.equal(formatRemaining(0), 'Expiring now');
  assert.equal(formatRemaining(-10), 'Expiring now');
});
