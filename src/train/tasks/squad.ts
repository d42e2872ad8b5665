// Extractive question answering in the SQuAD format: reading SQuAD v1.1 / v2.0 JSON (data ->
// paragraphs -> context + qas -> id, question, answers [{text, answer_start}], is_impossible), the
// features an encoder reads (`<s> question </s></s> context window </s>`, windows of the context
// `stride` tokens apart when it does not fit, as HF's run_qa), span targets (the answer's first and
// last token, or 0 = <s> when the window does not hold the answer or there is none, as HF), the
// best span from start / end logits mapped back to the context's characters, and the official
// scores (evaluate-v2.0.py's definitions, which equal evaluate-v1.1.py's on answerable questions):
// answers normalised (lower case, ASCII punctuation removed, articles a / an / the removed, white
// space collapsed), exact match and token-overlap F1, maxed over the gold answers, averaged x 100.
// The context is split at white space (SQuAD's own word split) and each word tokenised on its own,
// so every token knows its word and every word its characters.

import * as fs from 'node:fs';
import { check, LlamaAdapterError } from '../../core/errors.js';
import { stripBom } from '../../core/text.js';
import type { Tokenizer } from '../../tokenizer/tokenizer.js';

export interface SquadExample {
  id: string;
  question: string;
  context: string;
  answers: { text: string; start: number }[]; // empty: unanswerable (v2)
  where: string; // file and JSON path, for messages
}

/** Read SQuAD-format JSON; a malformed record or an answer not at its answer_start in its context is an error naming it. */
export function readSquad(path: string): SquadExample[] {
  let j: unknown;
  try {
    j = JSON.parse(stripBom(fs.readFileSync(path, 'utf8')));
  } catch (e) {
    throw new LlamaAdapterError(`${path}: cannot read SQuAD JSON (${e instanceof Error ? e.message : String(e)})`, { cause: e });
  }
  const data = (j as { data?: unknown })?.data;
  check(Array.isArray(data), `${path}: expected {"data": [...]} (SQuAD format)`);
  const out: SquadExample[] = [];
  const ids = new Set<string>();
  data.forEach((article: unknown, a) => {
    const paragraphs = (article as { paragraphs?: unknown })?.paragraphs;
    check(Array.isArray(paragraphs), `${path}: data[${a}] has no "paragraphs" list`);
    paragraphs.forEach((p: unknown, pi) => {
      const at = `${path}: data[${a}].paragraphs[${pi}]`;
      const { context, qas } = (p ?? {}) as { context?: unknown; qas?: unknown };
      check(typeof context === 'string', `${at}: "context" must be a string`);
      check(Array.isArray(qas), `${at}: "qas" must be a list`);
      qas.forEach((q: unknown, qi) => {
        const o = (q ?? {}) as Record<string, unknown>;
        const where = `${at}.qas[${qi}]${typeof o.id === 'string' ? ` (id ${o.id})` : ''}`;
        check(typeof o.id === 'string' && o.id !== '', `${where}: "id" must be a non-empty string`);
        check(!ids.has(o.id), `${where}: id ${o.id} appears twice`);
        ids.add(o.id);
        check(typeof o.question === 'string', `${where}: "question" must be a string`);
        const answers = o.answers ?? [];
        check(Array.isArray(answers), `${where}: "answers" must be a list`);
        check(answers.length > 0 || o.is_impossible === true, `${where}: no answers (and not marked "is_impossible")`);
        const ans = answers.map((x: unknown, k) => {
          const { text, answer_start: start } = (x ?? {}) as { text?: unknown; answer_start?: unknown };
          check(typeof text === 'string' && text !== '', `${where}: answers[${k}].text must be a non-empty string`);
          check(typeof start === 'number' && Number.isInteger(start), `${where}: answers[${k}].answer_start must be an integer`);
          check(
            start >= 0 && start + text.length <= context.length,
            `${where}: answers[${k}] (${JSON.stringify(text)} at ${start}) lies outside its context of ${context.length} characters`,
          );
          check(
            context.slice(start, start + text.length) === text,
            `${where}: answers[${k}] ${JSON.stringify(text)} is not what its context holds at ${start} (${JSON.stringify(context.slice(start, start + text.length))})`,
          );
          return { text, start };
        });
        out.push({ id: o.id, question: o.question, context, answers: o.is_impossible === true ? [] : ans, where });
      });
    });
  });
  check(out.length > 0, `${path}: no questions`);
  return out;
}

// ------------------------------------------------------------------ the official scores

// Python's str.isspace() characters (str.split() splits on them); JS's \s differs (it has U+FEFF, lacks U+001C-U+001F and U+0085).
const PY_SPACE = '[\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]';
const SPACE_RUN = new RegExp(`${PY_SPACE}+`, 'gu');
const PUNCT = new Set('!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~'); // Python's string.punctuation
// re.sub(r'\b(a|an|the)\b', ' ', text) with Python's Unicode \b (word characters: letters, numbers, _)
const ARTICLES = /(?<![\p{L}\p{N}_])(a|an|the)(?![\p{L}\p{N}_])/gu;

/** evaluate-v1.1.py / v2.0's normalize_answer. */
export function normalizeAnswer(s: string): string {
  let t = s.toLowerCase();
  t = [...t].filter((c) => !PUNCT.has(c)).join('');
  t = t.replace(ARTICLES, ' ');
  return splitPy(t).join(' ');
}

/** Python's str.split() (no argument): runs of white space, no empty strings. */
function splitPy(s: string): string[] {
  return s.split(SPACE_RUN).filter((x) => x !== '');
}

/** compute_exact: 1 when the normalised answers are equal. */
export function exactMatch(pred: string, gold: string): number {
  return normalizeAnswer(pred) === normalizeAnswer(gold) ? 1 : 0;
}

/** compute_f1: token-overlap F1 of the normalised answers (both empty: 1; one empty: 0). */
export function f1Score(pred: string, gold: string): number {
  const p = splitPy(normalizeAnswer(pred)),
    g = splitPy(normalizeAnswer(gold));
  if (p.length === 0 || g.length === 0) return p.length === g.length ? 1 : 0;
  const count = new Map<string, number>();
  for (const t of g) count.set(t, (count.get(t) ?? 0) + 1);
  let same = 0;
  for (const t of p) {
    const c = count.get(t) ?? 0;
    if (c > 0) {
      same++;
      count.set(t, c - 1);
    }
  }
  if (same === 0) return 0;
  const precision = same / p.length,
    recall = same / g.length;
  return (2 * precision * recall) / (precision + recall);
}

/**
 * The official totals over examples: exact_match and f1 (x 100), each question scored against its
 * gold answers (those that normalise to something; none: the empty answer, as v2.0) and maxed; a
 * question without a prediction scores 0.
 */
export function squadScores(examples: readonly SquadExample[], predictions: ReadonlyMap<string, string>): { exact_match: number; f1: number; total: number } {
  let em = 0,
    f1 = 0;
  for (const ex of examples) {
    const pred = predictions.get(ex.id);
    if (pred === undefined) continue;
    let golds = ex.answers.map((a) => a.text).filter((t) => normalizeAnswer(t) !== '');
    if (golds.length === 0) golds = [''];
    em += Math.max(...golds.map((g) => exactMatch(pred, g)));
    f1 += Math.max(...golds.map((g) => f1Score(pred, g)));
  }
  const n = examples.length;
  return { exact_match: (100 * em) / n, f1: (100 * f1) / n, total: n };
}

// ------------------------------------------------------------------ features

export interface QaSpecial {
  bos: number; // <s> (also where "no answer" points)
  eos: number; // </s> (also the separator)
  pad: number;
}

export interface QaFeature {
  example: number; // index into the examples
  ids: number[]; // (T) <s> q </s></s> window </s>
  ctxStart: number; // first context token position
  tokWord: number[]; // per context token of the window: its word index in the context
  start: number; // span target (token position; 0 = <s>: no answer in this window)
  end: number;
}

/** White-space words of a context with their character spans. */
function words(context: string): { text: string; start: number; end: number }[] {
  const out: { text: string; start: number; end: number }[] = [];
  const re = new RegExp(`[^${PY_SPACE.slice(1, -1)}]+`, 'gu');
  for (let m = re.exec(context); m; m = re.exec(context)) out.push({ text: m[0], start: m.index, end: m.index + m[0].length });
  return out;
}

/** Whether the tokenizer marks a word start itself (SentencePiece's dummy prefix) rather than by a leading space (byte-level BPE). */
function marksWordStart(tok: Tokenizer): boolean {
  const ids = tok.encode('word');
  return ids.length > 0 && tok.piece(ids[0]).startsWith('\u2581');
}

export interface QaFeatureOptions {
  maxLength: number; // tokens per feature (at most the model's)
  stride: number; // context tokens between window starts
  maxQuestion: number; // question tokens kept
}

/** Tokenise examples into windowed features with span targets. */
export function qaFeatures(
  examples: readonly SquadExample[],
  tok: Tokenizer,
  sp: QaSpecial,
  o: QaFeatureOptions,
): { features: QaFeature[]; words: ReturnType<typeof words>[] } {
  const sentencePiece = marksWordStart(tok);
  const features: QaFeature[] = [];
  const allWords: ReturnType<typeof words>[] = [];
  examples.forEach((ex, e) => {
    const ws = words(ex.context);
    allWords.push(ws);
    const ctx: number[] = [],
      tokWord: number[] = [];
    ws.forEach((w, i) => {
      for (const id of tok.encode(sentencePiece || i === 0 ? w.text : ` ${w.text}`)) {
        ctx.push(id);
        tokWord.push(i);
      }
    });
    const q = tok.encode(ex.question.trim()).slice(0, o.maxQuestion);
    const room = o.maxLength - q.length - 4;
    check(room >= 1, `${ex.where}: the question leaves no room for the context in ${o.maxLength} tokens`);
    // the answer's word span (the first answer trains, as HF)
    let aw0 = -1,
      aw1 = -1;
    if (ex.answers.length > 0) {
      const a = ex.answers[0];
      const a1 = a.start + a.text.length;
      aw0 = ws.findIndex((w) => w.end > a.start);
      for (let i = ws.length - 1; i >= 0 && aw1 < 0; i--) if (ws[i].start < a1) aw1 = i;
    }
    for (let s0 = 0; ; s0 += o.stride) {
      const s1 = Math.min(ctx.length, s0 + room);
      const ids = [sp.bos, ...q, sp.eos, sp.eos, ...ctx.slice(s0, s1), sp.eos];
      const ctxStart = q.length + 3;
      let start = 0,
        end = 0;
      if (aw0 >= 0) {
        const t0 = tokWord.indexOf(aw0),
          t1 = tokWord.lastIndexOf(aw1);
        if (t0 >= s0 && t1 < s1 && t0 <= t1) {
          start = ctxStart + t0 - s0;
          end = ctxStart + t1 - s0;
        }
      }
      features.push({ example: e, ids, ctxStart, tokWord: tokWord.slice(s0, s1), start, end });
      if (s1 >= ctx.length) break;
    }
  });
  return { features, words: allWords };
}

/**
 * The best answer of one example from its features' start / end logits (each (T) per feature): the
 * span (start <= end, at most maxAnswer tokens, inside the context) with the largest start + end
 * logit, as text of the context; with `allowNull` (a v2 dataset: some questions have no answer), ""
 * when the <s> score (start[0] + end[0]) beats every span (HF run_qa with null threshold 0).
 */
export function bestAnswer(
  ex: SquadExample,
  ws: readonly { start: number; end: number }[],
  feats: readonly { f: QaFeature; start: ArrayLike<number>; end: ArrayLike<number> }[],
  allowNull: boolean,
  maxAnswer = 30,
): string {
  let best = -Infinity,
    text = '',
    nullScore = Infinity;
  for (const { f, start, end } of feats) {
    nullScore = Math.min(nullScore, start[0] + end[0]);
    const n = f.tokWord.length;
    for (let i = 0; i < n; i++)
      for (let j = i; j < Math.min(n, i + maxAnswer); j++) {
        const s = start[f.ctxStart + i] + end[f.ctxStart + j];
        if (s > best) {
          best = s;
          text = ex.context.slice(ws[f.tokWord[i]].start, ws[f.tokWord[j]].end);
        }
      }
  }
  return allowNull && nullScore > best ? '' : text;
}
