// Helpers for Hugging Face byte-level BPE (GPT-2, Llama 3): the bytes <-> printable-unicode map,
// and translation of the Oniguruma split patterns in tokenizer.json into JavaScript RegExps.

let byteToChar: string[] | undefined;
let charToByte: Map<string, number> | undefined;

/** GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to U+0100 upwards. */
export function byteLevelAlphabet(): { byteToChar: readonly string[]; charToByte: ReadonlyMap<string, number> } {
  if (!byteToChar || !charToByte) {
    const table: string[] = new Array(256);
    const printable = (b: number): boolean => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    let n = 0;
    for (let b = 0; b < 256; b++) table[b] = String.fromCharCode(printable(b) ? b : 256 + n++);
    byteToChar = table;
    charToByte = new Map(table.map((c, b) => [c, b]));
  }
  return { byteToChar, charToByte };
}

/** The byte-level string of some text: each UTF-8 byte becomes one alphabet character. */
export function toByteLevel(bytes: Uint8Array): string {
  const { byteToChar: t } = byteLevelAlphabet();
  let s = '';
  for (const b of bytes) s += t[b];
  return s;
}

/** GPT-2's pre-tokenization pattern (ByteLevel use_regex). */
export const GPT2_PATTERN = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

const isAsciiLetter = (c: string): boolean => /^[A-Za-z]$/.test(c);
const swapCase = (c: string): string => (c === c.toLowerCase() ? c.toUpperCase() : c.toLowerCase());

/**
 * Translates the Oniguruma constructs tokenizer.json patterns use that JavaScript lacks:
 * `(?i:...)` groups (ASCII letters expanded to both cases) and `\x{HHHH}`. Returns a global,
 * unicode RegExp; throws (SyntaxError) for what JavaScript cannot compile.
 */
export function onigurumaToRegExp(pattern: string): RegExp {
  let out = '';
  let inClass = false;
  const ciStack: boolean[] = []; // per open group: does it turn case-insensitivity on?
  let ci = 0; // depth of enclosing (?i:) groups
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '\\') {
      const n = pattern[i + 1] ?? '';
      if (n === 'x' && pattern[i + 2] === '{') {
        const close = pattern.indexOf('}', i);
        out += `\\u{${pattern.slice(i + 3, close)}}`;
        i = close;
      } else if ((n === 'p' || n === 'P') && pattern[i + 2] === '{') {
        const close = pattern.indexOf('}', i);
        out += pattern.slice(i, close + 1);
        i = close;
      } else {
        out += c + n;
        i++;
      }
      continue;
    }
    if (inClass) {
      if (c === ']') inClass = false;
      if (ci > 0 && isAsciiLetter(c)) {
        if (pattern[i + 1] === '-' && isAsciiLetter(pattern[i + 2] ?? '')) {
          const hi = pattern[i + 2];
          out += `${c}-${hi}${swapCase(c)}-${swapCase(hi)}`;
          i += 2;
        } else out += c + swapCase(c);
      } else out += c;
      continue;
    }
    if (c === '[') {
      inClass = true;
      out += c;
      if (pattern[i + 1] === '^') out += pattern[++i];
      if (pattern[i + 1] === ']') out += pattern[++i]; // a leading ']' is literal
      continue;
    }
    if (c === '(') {
      if (pattern.startsWith('(?i:', i)) {
        ciStack.push(true);
        ci++;
        out += '(?:';
        i += 3;
      } else {
        ciStack.push(false);
        out += c;
      }
      continue;
    }
    if (c === ')') {
      if (ciStack.pop()) ci--;
      out += c;
      continue;
    }
    out += ci > 0 && isAsciiLetter(c) ? `[${c}${swapCase(c)}]` : c;
  }
  return new RegExp(out, 'gu');
}
