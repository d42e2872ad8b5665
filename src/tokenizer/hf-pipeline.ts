// The text-side stages of a Hugging Face tokenizer.json that we support: normalizers (Sequence,
// Prepend, Replace, NFC/NFD/NFKC/NFKD, Lowercase, Strip) and pre-tokenizers (Sequence, Metaspace,
// ByteLevel, Split, Digits, Whitespace, WhitespaceSplit). Anything else is refused at load time.
import { GPT2_PATTERN, onigurumaToRegExp, toByteLevel } from './byte-level.js';
import { utf8Encode } from './utf8-stream.js';

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

/** Throws the loader's one-line error. */
export type Fail = (what: string) => never;

export function asObject(v: Json | undefined): JsonObject | undefined {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? v : undefined;
}

export type Normalizer = (s: string) => string;

/** A pre-token; `first` = it starts at the beginning of the input (Metaspace prepend 'first'). */
export interface Word {
  text: string;
  first: boolean;
}
export type PreTokenizer = (words: Word[]) => Word[];

function patternOf(p: Json | undefined, where: string, fail: Fail): RegExp {
  const o = asObject(p);
  if (o && typeof o.String === 'string') return new RegExp(o.String.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'), 'gu');
  if (o && typeof o.Regex === 'string') {
    try {
      return onigurumaToRegExp(o.Regex);
    } catch (e) {
      return fail(`unsupported regex in ${where}: ${JSON.stringify(o.Regex)} (${(e as Error).message})`);
    }
  }
  return fail(`${where} has no String/Regex pattern`);
}

export function buildNormalizer(spec: Json | undefined, fail: Fail): Normalizer | null {
  const n = asObject(spec);
  if (!n) return null;
  switch (n.type) {
    case 'Sequence': {
      const parts = (Array.isArray(n.normalizers) ? n.normalizers : []).map((x) => buildNormalizer(x, fail));
      const fs = parts.filter((f): f is Normalizer => f !== null);
      return (s) => fs.reduce((acc, f) => f(acc), s);
    }
    case 'Prepend': {
      const p = typeof n.prepend === 'string' ? n.prepend : '';
      return (s) => (s.length > 0 ? p + s : s);
    }
    case 'Replace': {
      const re = patternOf(n.pattern, 'Replace normalizer', fail);
      const content = typeof n.content === 'string' ? n.content : '';
      return (s) => s.replace(re, () => content);
    }
    case 'NFC':
    case 'NFD':
    case 'NFKC':
    case 'NFKD': {
      const form = n.type;
      return (s) => s.normalize(form);
    }
    case 'Lowercase':
      return (s) => s.toLowerCase();
    case 'Strip': {
      const left = n.strip_left !== false;
      const right = n.strip_right !== false;
      return (s) => (left ? (right ? s.trim() : s.trimStart()) : right ? s.trimEnd() : s);
    }
    default:
      return fail(`unsupported normalizer type '${String(n.type)}'`);
  }
}

type Behavior = 'Removed' | 'Isolated' | 'MergedWithPrevious' | 'MergedWithNext' | 'Contiguous';

/** Splits like HF's NormalizedString::split with a SplitDelimiterBehavior. */
export function splitWords(word: Word, re: RegExp, behavior: Behavior, invert = false): Word[] {
  interface Seg {
    text: string;
    start: number; // offset in word.text
    match: boolean;
  }
  const segs: Seg[] = [];
  const s = word.text;
  let last = 0;
  re.lastIndex = 0;
  for (const m of s.matchAll(re)) {
    const at = m.index ?? 0;
    if (m[0].length === 0) continue;
    if (at > last) segs.push({ text: s.slice(last, at), start: last, match: invert });
    segs.push({ text: m[0], start: at, match: !invert });
    last = at + m[0].length;
  }
  if (last < s.length) segs.push({ text: s.slice(last), start: last, match: invert });

  let parts: Seg[] = [];
  if (behavior === 'Removed') parts = segs.filter((g) => !g.match);
  else if (behavior === 'Isolated') parts = segs;
  else if (behavior === 'Contiguous') {
    for (const g of segs) {
      const prev = parts[parts.length - 1];
      if (prev?.match && g.match) prev.text += g.text;
      else parts.push({ ...g });
    }
  } else if (behavior === 'MergedWithPrevious') {
    let prevMatch = false;
    for (const g of segs) {
      const prev = parts[parts.length - 1];
      if (g.match && !prevMatch && prev) prev.text += g.text;
      else parts.push({ ...g });
      prevMatch = g.match;
    }
  } else {
    let prevMatch = false;
    for (let i = segs.length - 1; i >= 0; i--) {
      const g = segs[i];
      const prev = parts[parts.length - 1];
      if (g.match && !prevMatch && prev) {
        prev.text = g.text + prev.text;
        prev.start = g.start;
      } else parts.push({ ...g });
      prevMatch = g.match;
    }
    parts.reverse();
  }
  return parts.map((p) => ({ text: p.text, first: word.first && p.start === 0 }));
}

const BEHAVIORS: readonly string[] = ['Removed', 'Isolated', 'MergedWithPrevious', 'MergedWithNext', 'Contiguous'];

/** The Metaspace pre-tokenizer's prepend rule ('always' | 'first' | 'never'). */
export function metaspaceScheme(o: JsonObject): 'always' | 'first' | 'never' {
  if (o.prepend_scheme === 'always' || o.prepend_scheme === 'first' || o.prepend_scheme === 'never') return o.prepend_scheme;
  return o.add_prefix_space === false ? 'never' : 'always';
}

export function buildPreTokenizer(spec: Json | undefined, fail: Fail): PreTokenizer | null {
  const p = asObject(spec);
  if (!p) return null;
  const each =
    (f: (w: Word) => Word[]): PreTokenizer =>
    (words) =>
      words.flatMap(f);
  switch (p.type) {
    case 'Sequence': {
      const fs = (Array.isArray(p.pretokenizers) ? p.pretokenizers : []).map((x) => buildPreTokenizer(x, fail)).filter((f): f is PreTokenizer => f !== null);
      return (words) => fs.reduce((acc, f) => f(acc), words);
    }
    case 'Metaspace': {
      const rep = typeof p.replacement === 'string' ? p.replacement : '\u2581';
      const scheme = metaspaceScheme(p);
      const split = p.split !== false;
      const sep = new RegExp(rep.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'), 'gu');
      return each((w) => {
        let t = w.text.replaceAll(' ', rep);
        if ((scheme === 'always' || (scheme === 'first' && w.first)) && !t.startsWith(rep)) t = rep + t;
        const word = { text: t, first: w.first };
        return split ? splitWords(word, sep, 'MergedWithNext') : [word];
      });
    }
    case 'ByteLevel': {
      const addPrefix = p.add_prefix_space !== false;
      const re = p.use_regex === false ? null : onigurumaToRegExp(GPT2_PATTERN);
      return each((w) => {
        const t = addPrefix && !w.text.startsWith(' ') ? ` ${w.text}` : w.text;
        const words = re ? splitWords({ text: t, first: w.first }, re, 'Isolated') : [{ text: t, first: w.first }];
        return words.map((x) => ({ text: toByteLevel(utf8Encode(x.text)), first: x.first }));
      });
    }
    case 'Split': {
      const re = patternOf(p.pattern, 'Split pre-tokenizer', fail);
      const behavior = typeof p.behavior === 'string' && BEHAVIORS.includes(p.behavior) ? (p.behavior as Behavior) : undefined;
      if (!behavior) return fail(`unsupported Split behavior '${String(p.behavior)}'`);
      const invert = p.invert === true;
      return each((w) => splitWords(w, re, behavior, invert));
    }
    case 'Digits': {
      const individual = p.individual_digits === true;
      return each((w) => splitWords(w, /[0-9]/gu, individual ? 'Isolated' : 'Contiguous'));
    }
    case 'Whitespace':
      return each((w) => splitWords(w, /\w+|[^\w\s]+/gu, 'Removed', true));
    case 'WhitespaceSplit':
      return each((w) => splitWords(w, /\s+/gu, 'Removed'));
    default:
      return fail(`unsupported pre_tokenizer type '${String(p.type)}'`);
  }
}
