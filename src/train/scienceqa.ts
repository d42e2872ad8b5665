// ScienceQA (Lu et al. 2022), the paper's multimodal benchmark: loaders for the official
// problems.json + pid_splits.json (+ captions.json for the text-only "LLaMA-Adapter_T" setting) and
// for LLaVA's test file (llava_test_CQM-A.json: context, question and lettered options in one
// string), the paper's prompt (question, context, choices; "Answer: The answer is (X)"), the answer
// extractor and the accuracy table of tools/evaluate_acc.py (NAT SOC LAN TXT IMG NO G1-6 G7-12 Avg;
// TXT and IMG overlap). Unlike the reference scorers, an answer that cannot be parsed counts as
// wrong, not as a random choice.

import * as fs from 'node:fs';
import { check, LlamaAdapterError } from '../core/errors.js';
import type { InstructionRecord } from './prompt-styles.js';

export interface SqaProblem {
  id: string;
  question: string;
  context: string; // the hint ('' when none); for LLaVA records without metadata, part of `question`
  choices: string[];
  answer: number | null; // index of the right choice
  image: string | null; // image file (relative to the images folder: "<id>/image.png"), null when none
  subject: string | null; // natural science / social science / language science (null: unknown)
  grade: number | null; // 1..12 (null: unknown)
  hasContext: boolean; // TXT: the problem has a text context
  caption: string | null; // captions.json's caption of the image, when loaded
}

const LETTERS = 'ABCDE';

function readJson(file: string): unknown {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new LlamaAdapterError(`${file}: cannot read ScienceQA data (${e instanceof Error ? e.message : String(e)})`, { cause: e });
  }
}

/** captions.json: {captions: {id: text}} (or a bare map). */
export function readCaptions(file: string): Map<string, string> {
  const j = readJson(file) as { captions?: Record<string, unknown> } & Record<string, unknown>;
  const m = (j.captions ?? j) as Record<string, unknown>;
  return new Map(Object.entries(m).filter((e): e is [string, string] => typeof e[1] === 'string'));
}

function fromProblem(id: string, p: Record<string, unknown>, file: string, captions: Map<string, string> | null): SqaProblem {
  const where = `${file}: problem ${id}`;
  check(typeof p.question === 'string', `${where}: "question" must be a string`);
  check(
    Array.isArray(p.choices) && p.choices.length >= 2 && p.choices.length <= 5 && p.choices.every((c) => typeof c === 'string'),
    `${where}: "choices" must be 2 to 5 strings`,
  );
  check(
    Number.isInteger(p.answer) && (p.answer as number) >= 0 && (p.answer as number) < (p.choices as string[]).length,
    `${where}: "answer" must index "choices"`,
  );
  const grade = typeof p.grade === 'string' && /^grade\d+$/.test(p.grade) ? Number(p.grade.slice(5)) : null;
  const hint = typeof p.hint === 'string' ? p.hint.trim() : '';
  const image = typeof p.image === 'string' && p.image ? `${id}/${p.image}` : null;
  return {
    id,
    question: p.question as string,
    context: hint,
    choices: p.choices as string[],
    answer: p.answer as number,
    image,
    subject: typeof p.subject === 'string' ? p.subject : null,
    grade,
    hasContext: hint.length > 0,
    caption: image ? (captions?.get(id) ?? null) : null,
  };
}

/** Problems of one split from the official files (problems.json may hold a subset: only the split's problems present are returned). */
export function loadScienceQA(problemsFile: string, splitsFile: string, split: string, captionsFile?: string): SqaProblem[] {
  const problems = readJson(problemsFile) as Record<string, Record<string, unknown>>;
  const splits = readJson(splitsFile) as Record<string, unknown>;
  const ids = splits[split];
  check(Array.isArray(ids), `${splitsFile}: no split "${split}" (it has ${Object.keys(splits).join(', ')})`);
  const captions = captionsFile ? readCaptions(captionsFile) : null;
  return (ids as unknown[])
    .map(String)
    .filter((id) => id in problems)
    .map((id) => fromProblem(id, problems[id], problemsFile, captions));
}

/**
 * LLaVA's ScienceQA test file: [{id, image?, conversations: [{from: human, value: "[<image>\n][Context: ...\n]question\nA. ...\nB. ..."}, {from: gpt, value: "B"}]}].
 * Context and question share one string there; where `problemsFile` has the problem, its own
 * question, hint, subject and grade are used, otherwise the whole text stands as the question.
 */
export function loadLlavaScienceQA(file: string, problemsFile?: string, captionsFile?: string): SqaProblem[] {
  const arr = readJson(file);
  check(Array.isArray(arr), `${file}: expected a JSON array of LLaVA records`);
  const meta = problemsFile ? (readJson(problemsFile) as Record<string, Record<string, unknown>>) : {};
  const captions = captionsFile ? readCaptions(captionsFile) : null;
  return (arr as Record<string, unknown>[]).map((r, i) => {
    const where = `${file}: record ${i + 1}`;
    const id = String(r.id);
    const conv = r.conversations as { from?: string; value?: string }[] | undefined;
    check(
      Array.isArray(conv) && conv.length >= 2 && typeof conv[0].value === 'string' && typeof conv[1].value === 'string',
      `${where}: no human / gpt conversation`,
    );
    const image = typeof r.image === 'string' ? r.image : null;
    // options are the last "\nA. ", then "\nB. ", ... in order (an option may hold a newline)
    const all = conv![0].value!.replace(/^<image>\n?/, '');
    const at = all.lastIndexOf('\nA. ');
    check(at >= 0, `${where}: no lettered options (A. ...) after the question`);
    const choices: string[] = [];
    let rest = all.slice(at + 1);
    for (let k = 1; k <= LETTERS.length; k++) {
      const next = k < LETTERS.length ? rest.indexOf(`\n${LETTERS[k]}. `) : -1;
      choices.push(rest.slice(3, next < 0 ? undefined : next));
      if (next < 0) break;
      rest = rest.slice(next + 1);
    }
    check(choices.length >= 2, `${where}: fewer than two lettered options`);
    const gold = LETTERS.indexOf(conv![1].value!.trim().charAt(0));
    check(gold >= 0 && gold < choices.length, `${where}: the answer "${conv![1].value}" is not one of the ${choices.length} options`);
    const m = meta[id];
    if (m) {
      const p = fromProblem(id, m, problemsFile!, captions);
      check(p.answer === gold && p.choices.length === choices.length, `${where}: problem ${id} differs between ${file} and ${problemsFile}`);
      return { ...p, image };
    }
    const text = all.slice(0, at);
    return {
      id,
      question: text,
      context: '',
      choices,
      answer: gold,
      image,
      subject: null,
      grade: null,
      hasContext: text.startsWith('Context: '),
      caption: image ? (captions?.get(id) ?? null) : null,
    };
  });
}

/**
 * How the choices and the answer are written. `paper`: "Choices: (A) c0 (B) c1" and "The answer is
 * (A)." (the paper's Fig. 4). `letters`: one "A. c0" line per choice (LLaVA's options) and "The answer
 * is A." (the form ScienceQA's own scorer parses), for tokenizers that have no parentheses (there
 * "(" and ")" become <unk>, which decodes to nothing).
 */
export const SQA_FORMATS = ['paper', 'letters'] as const;
export type SqaFormat = (typeof SQA_FORMATS)[number];

/** The characters a format needs beyond letters and the words of the problem (what a tokenizer must keep). */
export const SQA_FORMAT_MARKS: Record<SqaFormat, string> = { paper: '()', letters: '.' };

/**
 * The paper's prompt (sec. 5.1, Fig. 4): question, context, choices, then "Answer:"; the context is
 * the hint plus, with `useCaption`, the image's caption (the text-only setting), "N/A" when empty.
 */
export function sqaPrompt(p: SqaProblem, useCaption: boolean, format: SqaFormat = 'paper'): string {
  const ctx = [p.context, useCaption && p.caption ? p.caption : ''].filter(Boolean).join(' ').trim() || 'N/A';
  const choices = format === 'paper' ? p.choices.map((c, k) => ` (${LETTERS[k]}) ${c}`).join('') : p.choices.map((c, k) => `\n${LETTERS[k]}. ${c}`).join('');
  return `Question: ${p.question}\nContext: ${ctx}\nChoices:${choices}\nAnswer:`;
}

/** The training target for a problem (or, with `choice`, for that choice): " The answer is (X)." / " The answer is X." */
export function sqaTarget(p: SqaProblem, format: SqaFormat = 'paper', choice: number = p.answer ?? 0): string {
  return format === 'paper' ? ` The answer is (${LETTERS[choice]}).` : ` The answer is ${LETTERS[choice]}.`;
}

/** Instruction records for finetune (plain style: the prompt is the instruction), with the image when the problem has one. */
export function sqaTrainingRecords(ps: readonly SqaProblem[], useCaption: boolean, withImages: boolean, format: SqaFormat = 'paper'): InstructionRecord[] {
  return ps.map((p) => ({
    instruction: sqaPrompt(p, useCaption, format),
    input: '',
    output: sqaTarget(p, format),
    ...(withImages && p.image ? { image: p.image } : {}),
  }));
}

/** The chosen choice index from generated text: "The answer is (A)" or "The answer is A."; null when it cannot be parsed or names no choice. */
export function extractAnswer(text: string, nChoices: number): number | null {
  const m = /The answer is \(?([A-E])\)?(?![A-Za-z])/.exec(text);
  if (!m) return null;
  const k = LETTERS.indexOf(m[1]);
  return k < nChoices ? k : null;
}

export const SQA_COLUMNS = ['NAT', 'SOC', 'LAN', 'TXT', 'IMG', 'NO', 'G1-6', 'G7-12', 'Avg'] as const;
export type SqaColumn = (typeof SQA_COLUMNS)[number];

/** Accuracy per column (%) and the number of problems in it; subject and grade columns count only problems whose metadata is known. */
export function sqaTable(ps: readonly SqaProblem[], predicted: readonly (number | null)[]): Record<SqaColumn, { acc: number; n: number }> {
  const cols = Object.fromEntries(SQA_COLUMNS.map((c) => [c, { right: 0, n: 0 }])) as Record<SqaColumn, { right: number; n: number }>;
  ps.forEach((p, i) => {
    const ok = predicted[i] !== null && predicted[i] === p.answer ? 1 : 0;
    const add = (c: SqaColumn): void => {
      cols[c].right += ok;
      cols[c].n++;
    };
    if (p.subject === 'natural science') add('NAT');
    if (p.subject === 'social science') add('SOC');
    if (p.subject === 'language science') add('LAN');
    if (p.hasContext) add('TXT');
    if (p.image) add('IMG');
    if (!p.hasContext && !p.image) add('NO');
    if (p.grade !== null) add(p.grade <= 6 ? 'G1-6' : 'G7-12');
    add('Avg');
  });
  return Object.fromEntries(SQA_COLUMNS.map((c) => [c, { acc: cols[c].n ? (100 * cols[c].right) / cols[c].n : Number.NaN, n: cols[c].n }])) as Record<
    SqaColumn,
    { acc: number; n: number }
  >;
}
