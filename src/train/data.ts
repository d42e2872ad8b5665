// Instruction data: Alpaca JSON arrays and JSONL (instruction/input/output), Dolly
// (instruction/context/response), Self-Instruct seed tasks (instruction/instances[0]), chat
// records (OpenAI's fine-tuning format: messages, the last one the assistant's answer) and LLaVA
// records (conversations: human / gpt turns, "<image>" marking the picture). Any record may name
// an `image` file (multimodal adapters).
// Records become token rows BOS + prompt + output + EOS with loss on output + EOS only,
// truncated to maxSeqLen; batches are padded to their own longest row (dynamic padding). No file
// system here (the browser build trains with it); train/finetune.ts reads data files.

import { check, LlamaAdapterError } from '../core/errors.js';
import { stripBom, textLines } from '../core/text.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { PROMPT_STYLES, type InstructionRecord, type PromptStyleName } from './prompt-styles.js';

export const IGNORE = -100;

/**
 * Instruction records from the text of a data file named `name` (in errors): a JSON array or JSONL
 * of Alpaca, Dolly, Self-Instruct or chat records (OpenAI's fine-tuning format, `{"messages": [...]}`:
 * the last message is the assistant's answer, the user message before it the instruction).
 */
export function parseInstructionData(text: string, name: string): InstructionRecord[] {
  text = stripBom(text); // a BOM from a Windows editor is not content
  const items: { raw: unknown; where: string }[] = [];
  if (text.trimStart().startsWith('[')) {
    let arr: unknown;
    try {
      arr = JSON.parse(text);
    } catch (e) {
      throw jsonError(name, text, e as Error, 1);
    }
    check(Array.isArray(arr), `${name}: expected a JSON array of records`);
    (arr as unknown[]).forEach((raw, i) => items.push({ raw, where: `record ${i + 1}` }));
  } else {
    for (const { line, text: t } of textLines(text)) {
      if (!t.trim()) continue;
      try {
        items.push({ raw: JSON.parse(t), where: `line ${line}` });
      } catch (e) {
        throw jsonError(name, t, e as Error, line);
      }
    }
  }
  check(items.length > 0, `${name}: no records`);
  return items.map(({ raw, where }) => toRecord(raw, `${name}: ${where}`));
}

/** JSON.parse's error for `text` (which starts on line `firstLine`), naming the line and, where it says, the column. */
function jsonError(name: string, text: string, e: Error, firstLine: number): LlamaAdapterError {
  const m = /at position (\d+)/.exec(e.message);
  const before = m ? text.slice(0, Number(m[1])) : '';
  const lines = before.split('\n');
  const place = m
    ? `line ${firstLine + lines.length - 1}, column ${lines.at(-1)!.length + 1}`
    : firstLine > 1 || !text.includes('\n')
      ? `line ${firstLine}`
      : '';
  return new LlamaAdapterError(`${name}: ${place ? `${place}: ` : ''}invalid JSON (${e.message})`);
}

function toRecord(raw: unknown, where: string): InstructionRecord {
  check(raw !== null && typeof raw === 'object' && !Array.isArray(raw), `${where}: expected an object`);
  const o = raw as Record<string, unknown>;
  const image = imageField(o, where);
  if ('messages' in o) return withImage(chatRecord(o.messages, where), image);
  if ('conversations' in o) return withImage(llavaRecord(o.conversations, where), image);
  const str = (k: string): string | undefined => {
    const v = o[k];
    if (v === undefined || v === null) return undefined;
    check(typeof v === 'string', `${where}: field "${k}" must be a string`);
    return v as string;
  };
  const instruction = str('instruction');
  check(instruction !== undefined, `${where}: missing field "instruction" (or "messages")`);
  let input = str('input') ?? str('context') ?? '';
  let output = str('output') ?? str('response');
  if (output === undefined && Array.isArray(o.instances) && o.instances.length > 0) {
    const inst = o.instances[0] as Record<string, unknown>;
    check(typeof inst?.output === 'string', `${where}: instances[0].output must be a string`);
    output = inst.output as string;
    input = typeof inst.input === 'string' ? inst.input : input;
  }
  check(output !== undefined, `${where}: missing field "output" (or "response")`);
  return withImage({ instruction: instruction!, input, output: output! }, image);
}

function imageField(o: Record<string, unknown>, where: string): string | undefined {
  const v = o.image;
  if (v === undefined || v === null) return undefined;
  check(typeof v === 'string' && v.length > 0, `${where}: field "image" must be a file name (a non-empty string)`);
  return v as string;
}

function withImage(r: InstructionRecord, image: string | undefined): InstructionRecord {
  return image === undefined ? r : { ...r, image };
}

/** A LLaVA record: the last gpt turn is the output, the human turn before it the instruction (without the "<image>" marker). */
function llavaRecord(turns: unknown, where: string): InstructionRecord {
  check(Array.isArray(turns) && turns.length >= 2, `${where}: "conversations" must be a list of at least a human and a gpt turn`);
  const text = (i: number, from: string): string => {
    const t = (turns as unknown[])[i] as { from?: unknown; value?: unknown } | null;
    check(t !== null && typeof t === 'object', `${where}: conversations[${i}] must be an object`);
    check(t.from === from, `${where}: conversations[${i}].from is ${JSON.stringify(t.from ?? null)}, expected "${from}"`);
    check(typeof t.value === 'string', `${where}: conversations[${i}].value must be a string`);
    return t.value as string;
  };
  const n = turns.length;
  const instruction = text(n - 2, 'human')
    .replace(/^<image>\n?|\n?<image>$/g, '')
    .trim();
  return { instruction, input: '', output: text(n - 1, 'gpt') };
}

/** A chat record: the last message (the assistant's) is the output, the user message before it the instruction. */
function chatRecord(messages: unknown, where: string): InstructionRecord {
  check(Array.isArray(messages) && messages.length >= 2, `${where}: "messages" must be a list of at least a user and an assistant message`);
  const text = (i: number, role: string): string => {
    const m = (messages as unknown[])[i] as { role?: unknown; content?: unknown } | null;
    check(m !== null && typeof m === 'object', `${where}: messages[${i}] must be an object`);
    check(m.role === role, `${where}: messages[${i}].role is ${JSON.stringify(m.role ?? null)}, expected "${role}"`);
    const c = m.content;
    if (typeof c === 'string') return c;
    check(Array.isArray(c) && c.every((p) => typeof p?.text === 'string'), `${where}: messages[${i}].content must be a string or a list of text parts`);
    return (c as { text: string }[]).map((p) => p.text).join('');
  };
  const n = messages.length;
  return { instruction: text(n - 2, 'user'), input: '', output: text(n - 1, 'assistant') };
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
