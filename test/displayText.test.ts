// The one escaping of human-facing text: which characters become visible escapes, that ordinary
// text (accents, CJK, emoji, backslashes) is unchanged, that it is idempotent, and Datalog's own lines stay.
import { describe, expect, it } from 'vitest';
import { displayDatalog, displayLines, displaySafe, textColumns } from '../src/text/displayText.ts';

describe('displaySafe', () => {
  it('escapes C0, DEL, C1, bidi controls and line separators', () => {
    expect(displaySafe('a\r\n\tb')).toBe('a\\r\\n\\tb');
    expect(displaySafe('\u0000\u001b[2K\u007f')).toBe('\\x00\\x1b[2K\\x7f');
    expect(displaySafe('\u0085\u009b2K')).toBe('\\x85\\x9b2K');
    expect(displaySafe('\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c')).toBe('\\u202a\\u202b\\u202c\\u202d\\u202e\\u2066\\u2067\\u2068\\u2069\\u200e\\u200f\\u061c');
    expect(displaySafe('\u2028\u2029')).toBe('\\u2028\\u2029');
  });

  it('leaves ordinary text alone and is idempotent', () => {
    const text = 'Zoë 東京 🚀 C:\\path "quoted" ü';
    expect(displaySafe(text)).toBe(text);
    const once = displaySafe('x\u001b]8;;https://evil.example/\u0007y\u202e');
    expect(displaySafe(once)).toBe(once);
  });
});

describe('displayLines, displayDatalog and textColumns', () => {
  it('keep the text own line breaks only', () => {
    expect(displayLines('one\r\ntwo\u001b')).toBe('one\\r\ntwo\\x1b');
    expect(displayDatalog('user("alice");\ncheck if path("a\nFAKE");\n')).toBe('user("alice");\ncheck if path("a\\nFAKE");\n');
    expect(displayDatalog('check if x("\\"\n");\nnext;')).toBe('check if x("\\"\\n");\nnext;');
  });

  it('escapes every cell before padding', () => {
    expect(textColumns(['a', 'b'], [['x\ny', 'z']])).toBe('a     b\nx\\ny  z');
  });
});
