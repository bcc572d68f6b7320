import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sanitizeText, parseTags, validateListing, LISTING_TEXTS } from '../../js/listing.js';

const errs = (l) => validateListing(l).errors;

test('sanitising matches the server: markup and controls out, newline and tab kept, trimmed', () => {
  assert.equal(sanitizeText('  <b>Hi</b>\u0007\tthere\n '), 'Hi\tthere');
  assert.equal(sanitizeText('a < b'), 'a < b');
  assert.equal(sanitizeText('<script>x</script>'), 'x');
  assert.equal(sanitizeText('line\nbreak\u0085'), 'line\nbreak');
  assert.equal(sanitizeText('😀 ok'), '😀 ok');
  assert.equal(sanitizeText(null), '');
});

test('tags are split on spaces and commas, empty and repeated ones dropped', () => {
  assert.deepEqual(parseTags(' rust,  web  rust,,dev-talk '), ['rust', 'web', 'dev-talk']);
  assert.deepEqual(parseTags(''), []);
  assert.deepEqual(parseTags(undefined), []);
});

test('the reference texts, field by field', () => {
  assert.deepEqual(errs({ title: '<i></i>' }), { title: 'title is required' });
  assert.deepEqual(errs({ title: 'é'.repeat(51) }), { title: 'title must be 50 characters or less' });
  assert.deepEqual(errs({ title: '😀'.repeat(50) }), {}, '50 code points, not UTF-16 units');
  assert.deepEqual(errs({ title: 't', description: 'd'.repeat(201) }), { description: 'description must be 200 characters or less' });
  assert.deepEqual(errs({ title: 't', tags: ['a', 'b', 'c', 'd', 'e', 'f'] }), { tags: 'maximum 5 tags allowed' });
  assert.deepEqual(errs({ title: 't', tags: ['é'.repeat(11)] }), { tags: 'each tag must be 1-20 characters' }, '22 bytes');
  assert.deepEqual(errs({ title: 't', tags: ['ok', 'a_b'] }), { tags: 'tag "a_b" contains invalid characters (alphanumeric and hyphens only)' });
  assert.equal(LISTING_TEXTS.tagInvalid('#x'), 'tag "#x" contains invalid characters (alphanumeric and hyphens only)');
  // every field at once
  assert.deepEqual(Object.keys(errs({ title: '', description: 'x'.repeat(300), tags: ['!'] })), ['title', 'description', 'tags']);
});

test('a valid listing is sent sanitised', () => {
  const r = validateListing({ title: '  <b>Night</b> owls ', description: ' late\u0000 talk ', tags: ['late-night', 'Music2'] });
  assert.equal(r.ok, true);
  assert.deepEqual(r.listing, { title: 'Night owls', description: 'late talk', tags: ['late-night', 'Music2'] });
});
