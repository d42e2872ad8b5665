// Text generation with a KV cache: prefill each prompt, then decode all rows together one token
// per step (each row at its own position, with its own adapter or none). Streaming as an async
// iterator of pieces of valid UTF-8 text; stop tokens, stop strings, max tokens. Buffers (cache,
// activations, logits, sampler scratch) are allocated once per generation, not per token.

import type { Adapter } from '../methods/v1/adapter.js';
import { check } from '../core/errors.js';
import { Activations } from '../model/activations.js';
import { forwardPass } from '../model/forward.js';
import { KVCache } from '../model/kvcache.js';
import type { LlamaModel } from '../model/model.js';
import type { PromptSource } from '../model/method.js';
import type { StreamDecoder } from '../tokenizer/tokenizer.js';
import { Sampler, type SamplingOptions } from './sampler.js';

export interface GenerateOptions extends SamplingOptions {
  maxTokens?: number; // new tokens at most (default 256; also bounded by the context)
  stop?: readonly string[]; // stop strings: generation ends before the first occurrence
  stopTokens?: readonly number[]; // ids that end generation (default: the tokenizer's EOS)
  adapter?: Adapter | null; // adapter for every row
  bos?: boolean; // prepend BOS to a string prompt (default true)
  seeds?: readonly number[]; // per-row sampling seeds (default: seed + row index), so a request's text
  // does not depend on the batch row it was given (batched serving)
}

export interface GenerationPiece {
  id: number; // the new token id
  text: string; // newly complete text (may be '' while a UTF-8 character or a possible stop string is pending)
}

export type FinishReason = 'stop' | 'length';

export interface GenerationResult {
  promptIds: number[]; // encoded prompt, including BOS
  ids: number[]; // generated ids (a stop token is not included)
  text: string; // generated text (a stop string is not included)
  finishReason: FinishReason;
}

/** Per-row decoding state: sampling, stop detection, streaming text. */
class Row {
  ids: number[] = [];
  text = '';
  emitted = 0; // characters of `text` already handed out
  done = false;
  finish: FinishReason = 'length';
  seen: Set<number>;

  constructor(readonly promptIds: number[], readonly sampler: Sampler, readonly decoder: StreamDecoder, private readonly stop: readonly string[], private readonly stopTokens: ReadonlySet<number>) {
    this.seen = new Set(promptIds);
  }

  /** Accept a sampled id; returns the text that may be emitted now. */
  accept(id: number): string {
    if (this.stopTokens.has(id)) {
      this.done = true;
      this.finish = 'stop';
      this.text += this.decoder.flush();
      return this.release(this.text.length);
    }
    this.ids.push(id);
    this.seen.add(id);
    this.text += this.decoder.push(id);
    for (const s of this.stop) {
      const at = this.text.indexOf(s, Math.max(0, this.emitted - s.length));
      if (at >= 0) {
        this.done = true;
        this.finish = 'stop';
        this.text = this.text.slice(0, at);
        return this.release(at);
      }
    }
    // hold back a suffix that could still become a stop string
    let hold = 0;
    for (const s of this.stop) {
      for (let k = Math.min(s.length - 1, this.text.length); k > hold; k--) {
        if (this.text.endsWith(s.slice(0, k))) {
          hold = k;
          break;
        }
      }
    }
    return this.release(this.text.length - hold);
  }

  finishText(): string {
    if (!this.done) this.text += this.decoder.flush();
    return this.release(this.text.length);
  }

  private release(upTo: number): string {
    const out = this.text.slice(this.emitted, Math.max(this.emitted, upTo));
    this.emitted = Math.max(this.emitted, upTo);
    return out;
  }

  result(): GenerationResult {
    return { promptIds: this.promptIds, ids: this.ids, text: this.text, finishReason: this.finish };
  }
}

/** Encode a prompt: a string (BOS + text; '' = BOS alone) or ids used as given. */
export function encodePrompt(model: LlamaModel, prompt: string | readonly number[], bos = true): number[] {
  if (typeof prompt !== 'string') return [...prompt];
  return model.tokenizer.encode(prompt, { bos });
}

/**
 * Decode several prompts together. Yields after every step the new pieces per row (rows that
 * are done yield nothing). `adapters` optionally gives one adapter per row.
 */
export async function* generateRows(
  model: LlamaModel, prompts: readonly (string | readonly number[])[], o: GenerateOptions = {},
  adapters?: readonly (Adapter | null)[],
): AsyncGenerator<(GenerationPiece | null)[], GenerationResult[]> {
  const c = model.config;
  const B = prompts.length;
  check(B > 0, 'generate: no prompts');
  const promptIds = prompts.map((p) => encodePrompt(model, p, o.bos ?? true));
  const longest = Math.max(...promptIds.map((p) => p.length));
  for (const p of promptIds) check(p.length > 0, 'generate: a prompt encodes to no tokens (use bos: true)');
  check(longest <= c.maxSeqLen, `prompt of ${longest} tokens is longer than the model's context of ${c.maxSeqLen} tokens`);
  const maxNew = Math.min(o.maxTokens ?? 256, c.maxSeqLen - longest);
  const S = longest + maxNew;
  const perRow: (Adapter | null)[] = adapters ? [...adapters] : new Array<Adapter | null>(B).fill(o.adapter ?? null);
  check(perRow.length === B, `generate: ${perRow.length} adapters for ${B} prompts`);
  for (const a of perRow) if (a) check(a.host === model, 'generate: adapter belongs to another model instance');
  const sources: (PromptSource | null)[] | null = perRow.some((a) => a) ? perRow : null;
  const K = Math.max(1, ...perRow.map((a) => (a ? a.config.promptLength : 1)));

  const stopTokens = new Set(o.stopTokens ?? [c.eosId]);
  if (o.seeds) {
    check(o.seeds.length === B, `generate: ${o.seeds.length} seeds for ${B} prompts`);
    for (const s of o.seeds) check(Number.isInteger(s), `generate: seed ${s} is not an integer`);
  }
  const rows = promptIds.map((p, b) => new Row(p, new Sampler(c.vocabSize, { ...o, seed: o.seeds ? o.seeds[b] : (o.seed ?? 0) + b }),
    model.tokenizer.decoder({ atStart: p.length === 1 && p[0] === c.bosId || p.length === 0 }), o.stop ?? [], stopTokens));
  if (maxNew <= 0) return rows.map((r) => r.result());

  const cache = new KVCache(c, B, S);
  const acts = new Activations(c);
  acts.ensure(B, longest, K, -1);
  const V = c.vocabSize;
  const logits = new Float32Array(B * V); // (B, V)
  const one = new Int32Array(1);
  // ---- prefill, one row at a time (rows differ in length); logits of the last position only
  for (let b = 0; b < B; b++) {
    const p = promptIds[b];
    acts.ids.set(p);
    acts.pos[0] = 0;
    one[0] = p.length - 1;
    forwardPass(model, acts, {
      B: 1, T: p.length, cache: cache.row(b), sources: sources ? [sources[b]] : null, train: false,
      logitRows: one, logits: logits.subarray(b * V, (b + 1) * V),
    });
  }
  const pos = new Int32Array(B);
  for (let b = 0; b < B; b++) pos[b] = promptIds[b].length;
  const pieces: (GenerationPiece | null)[] = new Array(B).fill(null);
  for (let step = 0; step < maxNew; step++) {
    let live = 0;
    for (let b = 0; b < B; b++) {
      pieces[b] = null;
      const r = rows[b];
      if (r.done) continue;
      const id = r.sampler.sample(logits.subarray(b * V, (b + 1) * V), r.seen);
      const text = r.accept(id);
      pieces[b] = { id, text };
      acts.ids[b] = id;
      if (!r.done) live++;
    }
    if (live > 0 && step + 1 < maxNew) {
      // ---- decode: all rows one token; finished rows are computed but ignored
      acts.pos.set(pos);
      forwardPass(model, acts, { B, T: 1, cache, sources, train: false, logitRows: null, logits });
      for (let b = 0; b < B; b++) pos[b]++;
    }
    if (live === 0 || step + 1 === maxNew) {
      for (let b = 0; b < B; b++) {
        const tail = rows[b].finishText();
        if (tail) pieces[b] = { id: pieces[b]?.id ?? -1, text: (pieces[b]?.text ?? '') + tail };
      }
      yield pieces;
      break;
    }
    yield pieces;
  }
  return rows.map((r) => r.result());
}

/** Stream one prompt's generation as pieces; the iterator's return value is the full result. */
export async function* generate(model: LlamaModel, prompt: string | readonly number[], o: GenerateOptions = {}): AsyncGenerator<GenerationPiece, GenerationResult> {
  const it = generateRows(model, [prompt], o);
  for (;;) {
    const r = await it.next();
    if (r.done) return r.value[0];
    const p = r.value[0];
    if (p) yield p;
  }
}

/** Generate for several prompts at once (optionally one adapter per prompt); resolves to all results. */
export async function generateBatch(model: LlamaModel, prompts: readonly (string | readonly number[])[], o: GenerateOptions = {}, adapters?: readonly (Adapter | null)[]): Promise<GenerationResult[]> {
  const it = generateRows(model, prompts, o, adapters);
  for (;;) {
    const r = await it.next();
    if (r.done) return r.value;
  }
}
