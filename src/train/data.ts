// Instruction data: Alpaca JSON arrays and JSONL (instruction/input/output), Dolly
// (instruction/context/response) and Self-Instruct seed tasks (instruction/instances[0]).
// Records become token rows BOS + prompt + output + EOS with loss on output + EOS only,
// truncated to maxSeqLen; batches are padded to their own longest row (dynamic padding).

import * as fs from 'node:fs';
import { check, LlamaAdapterError } from '../core/errors.js';
import { stripBom, textLines } from '../core/text.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { PROMPT_STYLES, type InstructionRecord, type PromptStyleName } from './prompt-styles.js';

export const IGNORE = -100;

/**
 * Read instruction records (a UTF-8 BOM and CRLF line endings read the same as plain LF text);
 * errors name the file and the record (JSON arrays) or line (JSONL), both numbered from 1.
 */
export function readInstructionData(path: string): InstructionRecord[] {
  let text: string;
  try {
    text = stripBom(fs.readFileSync(path, 'utf8')); // a BOM from a Windows editor is not content
  } catch (e) {
    throw new LlamaAdapterError(`${path}: cannot read data file (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
  }
  const trimmed = text.trimStart();
  const items: { raw: unknown; where: string }[] = [];
  if (trimmed.startsWith('[')) {
    let arr: unknown;
    try {
      arr = JSON.parse(text);
    } catch (e) {
      throw new LlamaAdapterError(`${path}: invalid JSON (${(e as Error).message})`);
    }
    check(Array.isArray(arr), `${path}: expected a JSON array of records`);
    (arr as unknown[]).forEach((raw, i) => items.push({ raw, where: `record ${i + 1}` }));
  } else {
    for (const { line, text: t } of textLines(text)) {
      if (!t.trim()) continue;
      try {
        items.push({ raw: JSON.parse(t), where: `line ${line}` });
      } catch (e) {
        throw new LlamaAdapterError(`${path}: line ${line}: invalid JSON (${(e as Error).message})`);
      }
    }
  }
  check(items.length > 0, `${path}: no records`);
  return items.map(({ raw, where }) => toRecord(raw, `${path}: ${where}`));
}

function toRecord(raw: unknown, where: string): InstructionRecord {
  check(raw !== null && typeof raw === 'object' && !Array.isArray(raw), `${where}: expected an object`);
  const o = raw as Record<string, unknown>;
  const str = (k: string): string | undefined => {
    const v = o[k];
    if (v === undefined || v === null) return undefined;
    check(typeof v === 'string', `${where}: field "${k}" must be a string`);
    return v as string;
  };
  const instruction = str('instruction');
  check(instruction !== undefined, `${where}: missing field "instruction"`);
  let input = str('input') ?? str('context') ?? '';
  let output = str('output') ?? str('response');
  if (output === undefined && Array.isArray(o.instances) && o.instances.length > 0) {
    const inst = o.instances[0] as Record<string, unknown>;
    check(typeof inst?.output === 'string', `${where}: instances[0].output must be a string`);
    output = inst.output as string;
    input = typeof inst.input === 'string' ? inst.input : input;
  }
  check(output !== undefined, `${where}: missing field "output" (or "response")`);
  return { instruction: instruction!, input, output: output! };
}

/** One tokenized training example: ids and aligned next-token targets. */
export interface Example {
  tokens: number[]; // BOS + prompt + output + EOS (truncated)
  targets: number[]; // targets[t] = tokens[t+1] on output/EOS positions, else -100
}

export function tokenizeExample(tok: Tokenizer, r: InstructionRecord, style: PromptStyleName, maxSeqLen: number): Example {
  const prompt = tok.encode(PROMPT_STYLES[style].prompt(r), { bos: true });
  const full = tok.encode(PROMPT_STYLES[style].prompt(r) + r.output, { bos: true, eos: true });
  // loss starts where the prompt's tokens end (the joint encoding may merge across the boundary:
  // take the common prefix as the prompt)
  let p = 0;
  while (p < prompt.length && p < full.length && prompt[p] === full[p]) p++;
  const tokens = full.slice(0, maxSeqLen);
  const targets = tokens.map((_, t) => (t + 1 < tokens.length && t + 1 >= p ? tokens[t + 1] : IGNORE));
  return { tokens, targets };
}

/** Pad a batch to its longest row; padding positions carry no loss. */
export function padBatch(ex: readonly Example[], padId: number): { tokens: number[][]; targets: number[][]; T: number } {
  const T = Math.max(...ex.map((e) => e.tokens.length));
  return {
    T,
    tokens: ex.map((e) => [...e.tokens, ...new Array<number>(T - e.tokens.length).fill(padId)]),
    targets: ex.map((e) => [...e.targets, ...new Array<number>(T - e.targets.length).fill(IGNORE)]),
  };
}
