// generate() and generateBatch(): thin loops over the step-wise engine (engine.ts). A string prompt
// is BOS + its encoding ('' = BOS alone); ids are used as given. generate() streams one prompt's
// text as pieces of valid UTF-8; generateBatch() decodes several prompts together, each with its
// own adapter (or none) and seed, and resolves to every result.

import { check } from '../core/errors.js';
import type { PromptSource } from '../model/method.js';
import type { LlamaModel } from '../model/model.js';
import { Engine, type GenerationPiece, type GenerationResult } from './engine.js';
import type { SamplingOptions } from './sampler.js';

export type { FinishReason, GenerationPiece, GenerationResult } from './engine.js';

export interface GenerateOptions extends SamplingOptions {
  maxTokens?: number; // new tokens at most (default 256; also bounded by the context)
  stop?: readonly string[]; // stop strings: generation ends before the first occurrence
  stopTokens?: readonly number[]; // ids that end generation (default: the tokenizer's EOS)
  adapter?: PromptSource | null; // adapter (or any prompt source) for every row
  bos?: boolean; // prepend BOS to a string prompt (default true)
  seeds?: readonly number[]; // per-row sampling seeds (default: seed + row index), so a request's text
  // does not depend on the batch row it was given (batched serving)
  prefillChunk?: number; // prompt tokens per prefill forward (default 512)
}

type Prompt = string | readonly number[];

/** Encode a prompt: a string (BOS + text; '' = BOS alone) or ids used as given. */
export function encodePrompt(model: LlamaModel, prompt: Prompt, bos = true): number[] {
  if (typeof prompt !== 'string') return [...prompt];
  return model.tokenizer.encode(prompt, { bos });
}

/**
 * An engine with one slot per prompt, every prompt admitted (slot b = prompt b). Its slots hold
 * as many positions as the longest request needs (prompt + maxTokens, within the context).
 */
function batchEngine(model: LlamaModel, prompts: readonly Prompt[], o: GenerateOptions, adapters?: readonly (PromptSource | null)[]): Engine {
  const c = model.config;
  const B = prompts.length;
  check(B > 0, 'generate: no prompts');
  const ids = prompts.map((p) => encodePrompt(model, p, o.bos ?? true));
  const perRow = adapters ? [...adapters] : new Array<PromptSource | null>(B).fill(o.adapter ?? null);
  check(perRow.length === B, `generate: ${perRow.length} adapters for ${B} prompts`);
  if (o.seeds) check(o.seeds.length === B, `generate: ${o.seeds.length} seeds for ${B} prompts`);
  const maxTokens = o.maxTokens ?? 256;
  // each request is checked by admit(); a bad maxTokens must not size the slots
  const room = Number.isInteger(maxTokens) && maxTokens > 0 ? maxTokens : 0;
  const S = Math.max(...ids.map((p) => Math.min(c.maxSeqLen, p.length + room)));
  const engine = new Engine(model, { slots: B, contextLength: S, prefillChunk: o.prefillChunk });
  for (let b = 0; b < B; b++) {
    engine.admit({ ...o, prompt: ids[b], source: perRow[b], maxTokens, seed: o.seeds ? o.seeds[b] : (o.seed ?? 0) + b });
  }
  return engine;
}

/** Stream one prompt's generation as pieces; the iterator's return value is the full result. */
export async function* generate(model: LlamaModel, prompt: Prompt, o: GenerateOptions = {}): AsyncGenerator<GenerationPiece, GenerationResult> {
  const engine = batchEngine(model, [prompt], o);
  for (;;) {
    for (const e of await engine.stepAsync()) {
      if (e.piece) yield e.piece;
      if (e.result) return e.result;
    }
  }
}

/** Generate for several prompts at once (optionally one adapter per prompt); resolves to all results, in prompt order. */
export async function generateBatch(
  model: LlamaModel,
  prompts: readonly Prompt[],
  o: GenerateOptions = {},
  adapters?: readonly (PromptSource | null)[],
): Promise<GenerationResult[]> {
  const engine = batchEngine(model, prompts, o, adapters);
  const results: GenerationResult[] = new Array(prompts.length);
  let left = prompts.length;
  while (left > 0) {
    for (const e of await engine.stepAsync()) {
      if (e.result) {
        results[e.slot] = e.result;
        left--;
      }
    }
  }
  return results;
}
