// The step-wise generation engine: a fixed pool of slots over one slot KV cache, each slot one
// request with its own position, prompt source (adapter or none), sampler, seed and stop state.
//
//   admit(request) -> slot   takes a free slot; its prompt is prefilled by later step()s in
//                            chunks of at most `prefillChunk` tokens, so a long prompt does not
//                            stall the requests that are decoding (waiting prompts whose next
//                            chunks have the same length share one forward)
//   step()                   runs this step's prefill chunks, samples one token for every slot
//                            that has logits, then one decode forward for all of them together
//   evict(slot)              frees a slot at once (cancelled); finished slots free themselves
//
// Rows of a decode forward are ordered by prompt source (rows sharing an adapter are adjacent, so
// they share one prompt-branch kernel call) and read their keys/values from their slot's cache
// row, so callers never arrange rows. A request's tokens depend only on the request: its chunk
// boundaries, seed and length limit are its own (exactly so on the TypeScript backend and with the
// native batch-invariant matmul; within kernel tolerance otherwise). A step reads logits back after
// each forward (its sync points, backend/memory.ts): step() runs on host backends, stepAsync() on
// every backend; a slot evicted while an async step waits is freed when that step ends.

import { runAsync, runSync, type Steps } from '../backend/memory.js';
import { check } from '../core/errors.js';
import { Activations } from '../model/activations.js';
import { forwardPass } from '../model/forward.js';
import { KVCache } from '../model/kvcache.js';
import type { PromptSource } from '../model/method.js';
import { maxPromptLength, type LlamaModel } from '../model/model.js';
import type { StreamDecoder } from '../tokenizer/tokenizer.js';
import { Sampler, type SamplingOptions } from './sampler.js';

export interface EngineOptions {
  slots: number; // requests decoded at once (rows of the slot KV cache)
  contextLength?: number; // S: positions per slot (prompt + generated), default and at most the model's context
  prefillChunk?: number; // prompt tokens per prefill forward, and the prefill budget of one step (default 512)
}

export interface EngineRequest extends SamplingOptions {
  prompt: readonly number[]; // token ids, BOS included when wanted (at least one id)
  source?: PromptSource | null; // adapter (or any prompt source) for this request; null = base model
  maxTokens?: number; // new tokens at most (default 256; also bounded by the slot's context)
  stop?: readonly string[]; // stop strings: generation ends before the first occurrence
  stopTokens?: readonly number[]; // ids that end generation (default: the tokenizer's EOS)
  logprobs?: number; // when set: every piece carries its log-probability and this many top alternatives (0..20)
}

/** A token and its log-probability under the model (log-softmax of the raw logits, before penalties and temperature). */
export interface TokenLogprob {
  id: number;
  logprob: number;
}

export interface GenerationPiece {
  id: number; // the new token id
  text: string; // newly complete text (may be '' while a UTF-8 character or a possible stop string is pending)
  logprob?: TokenLogprob & { top: TokenLogprob[] }; // with EngineRequest.logprobs: the token's and the most likely ones'
}

export type FinishReason = 'stop' | 'length';

export interface GenerationResult {
  promptIds: number[]; // the prompt, as given (BOS included)
  ids: number[]; // generated ids (a stop token is not included)
  text: string; // generated text (a stop string is not included)
  finishReason: FinishReason;
}

/** What one step did for one slot: the token it sampled (null when it finished without one) and, when it finished, its result (the slot is free again). */
export interface EngineEvent {
  slot: number;
  piece: GenerationPiece | null;
  result: GenerationResult | null;
}

/** Per-request decoding state: sampling, stop detection, streaming text. */
class Row {
  ids: number[] = [];
  text = '';
  emitted = 0; // characters of `text` already handed out
  done = false;
  finish: FinishReason = 'length';
  seen: Set<number>;
  counts = new Map<number, number>(); // generated id -> occurrences (presence / frequency penalties)

  constructor(
    readonly promptIds: number[],
    readonly sampler: Sampler,
    readonly decoder: StreamDecoder,
    private readonly stop: readonly string[],
    private readonly stopTokens: ReadonlySet<number>,
  ) {
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
    this.counts.set(id, (this.counts.get(id) ?? 0) + 1);
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

  /** The rest of the text at the end (pending UTF-8 bytes, a held-back stop-string prefix). */
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

/** One occupied slot. */
interface Slot {
  row: Row;
  source: PromptSource | null;
  prefilled: number; // prompt tokens already in the cache
  pos: number; // position of the next token to write (= tokens in the cache)
  maxNew: number; // tokens this request may still be given in all
  hasLogits: boolean; // logits of the last cached position are in the slot's logits row
  order: number; // admission counter (prefill is first come, first served)
  sourceKey: number; // decode rows are ordered by it, so rows sharing a source are adjacent (0 = none)
  logprobs: number; // top alternatives per piece; -1 = no log-probabilities
}

export class Engine {
  readonly slots: number;
  readonly contextLength: number; // S
  readonly prefillChunk: number;
  private readonly cache: KVCache; // (slots, S, Hkv*hs) per layer
  private readonly acts: Activations;
  private readonly logits: Float32Array; // (slots, V) logits of each slot's last position
  private readonly batchLogits: Float32Array; // (slots, V) logits of one forward, in batch-row order
  private readonly rawLogits: Float32Array; // (V) a row before the sampler's penalties edit it (log-probabilities)
  private readonly state: (Slot | null)[];
  private admitted = 0;
  private stepping = false; // an async step is waiting at a sync point
  private evicted: { slot: number; was: Slot }[] = []; // requests evicted meanwhile (their slots are freed when it ends)
  private readonly argmax: (x: Float32Array, n: number) => number; // the backend's (greedy sampling)

  constructor(
    readonly model: LlamaModel,
    o: EngineOptions,
  ) {
    const c = model.config;
    check(Number.isInteger(o.slots) && o.slots >= 1, `engine: slots must be a positive integer (got ${o.slots})`);
    const S = o.contextLength ?? c.maxSeqLen;
    check(
      Number.isInteger(S) && S >= 1 && S <= c.maxSeqLen,
      `engine: contextLength must be an integer between 1 and the model's context of ${c.maxSeqLen} (got ${S})`,
    );
    const chunk = o.prefillChunk ?? 512;
    check(Number.isInteger(chunk) && chunk >= 1, `engine: prefillChunk must be a positive integer (got ${chunk})`);
    this.slots = o.slots;
    this.contextLength = S;
    this.prefillChunk = chunk;
    this.cache = new KVCache(c, o.slots, S);
    this.acts = new Activations(c);
    this.logits = new Float32Array(o.slots * c.vocabSize);
    this.batchLogits = new Float32Array(o.slots * c.vocabSize);
    this.rawLogits = new Float32Array(c.vocabSize);
    this.state = new Array<Slot | null>(o.slots).fill(null);
    const be = model.backend;
    this.argmax = (x, n) => be.argmax(x, n);
  }

  /** Slots holding a request (prefilling or decoding). */
  get active(): number {
    let n = 0;
    for (const s of this.state) if (s) n++;
    return n;
  }

  /** Slots free for admit(). */
  get free(): number {
    return this.slots - this.active;
  }

  /** Whether slot i holds a request. */
  busy(slot: number): boolean {
    return this.state[slot] != null;
  }

  /** The checks admit() makes of a request, without taking a slot (a server answers a bad request before queueing it). */
  validate(r: EngineRequest): void {
    const c = this.model.config;
    const n = r.prompt.length;
    const maxTokens = r.maxTokens ?? 256;
    check(Number.isInteger(maxTokens) && maxTokens >= 0, `generate: maxTokens must be an integer >= 0 (got ${maxTokens})`);
    check(n > 0, 'generate: a prompt encodes to no tokens (use bos: true)');
    for (const id of r.prompt)
      check(Number.isInteger(id) && id >= 0 && id < c.vocabSize, `generate: prompt token id ${id} is outside the vocabulary (0..${c.vocabSize - 1})`);
    check(
      n <= this.contextLength,
      `prompt of ${n} tokens is longer than the ${this.contextLength === c.maxSeqLen ? "model's" : "engine's"} context of ${this.contextLength} tokens`,
    );
    if (r.seed !== undefined) check(Number.isInteger(r.seed), `generate: seed ${r.seed} is not an integer`);
    if (r.logprobs !== undefined)
      check(Number.isInteger(r.logprobs) && r.logprobs >= 0 && r.logprobs <= 20, `generate: logprobs must be an integer between 0 and 20 (got ${r.logprobs})`);
    if (r.source) this.model.checkOwn(r.source);
  }

  /** Take a free slot for the request and return its index; throws a LlamaAdapterError on a bad request or when no slot is free. */
  admit(r: EngineRequest): number {
    this.validate(r);
    const c = this.model.config;
    const n = r.prompt.length;
    const maxTokens = r.maxTokens ?? 256;
    const slot = this.state.indexOf(null);
    check(slot >= 0, `engine: all ${this.slots} slots are busy`);
    const promptIds = [...r.prompt];
    const row = new Row(
      promptIds,
      new Sampler(c.vocabSize, r, this.argmax),
      this.model.tokenizer.decoder({ atStart: n === 1 && promptIds[0] === c.bosId }),
      r.stop ?? [],
      new Set(r.stopTokens ?? [c.eosId]),
    );
    const maxNew = Math.min(maxTokens, this.contextLength - n);
    // nothing to generate (maxTokens 0 or a full context): no prefill, the next step finishes it
    const prefilled = maxNew > 0 ? 0 : n;
    this.state[slot] = {
      row,
      source: r.source ?? null,
      prefilled,
      pos: prefilled,
      maxNew,
      hasLogits: false,
      order: this.admitted++,
      sourceKey: r.source ? sourceKey(r.source) : 0,
      logprobs: r.logprobs ?? -1,
    };
    return slot;
  }

  /** Free a slot at once (a cancelled request); its cache row is reused by the next admit. */
  evict(slot: number): void {
    check(Number.isInteger(slot) && slot >= 0 && slot < this.slots, `engine: no slot ${slot}`);
    const was = this.state[slot];
    if (this.stepping && was) this.evicted.push({ slot, was });
    else this.state[slot] = null;
  }

  /** The result so far of the request in a slot (null when the slot is free). */
  partial(slot: number): GenerationResult | null {
    return this.state[slot]?.row.result() ?? null;
  }

  /** One engine step (see the file header) on a host backend. Returns one event per slot that sampled a token or finished. */
  step(): EngineEvent[] {
    return runSync(this.model.backend.memory, this.steps(), 'stepAsync');
  }

  /** step() on any backend, a device one included. Steps must not overlap. */
  async stepAsync(): Promise<EngineEvent[]> {
    check(!this.stepping, 'engine: a step is already running');
    this.stepping = true;
    try {
      return await runAsync(this.model.backend.memory, this.steps());
    } finally {
      this.stepping = false;
      // unless the request finished meanwhile and its slot went to another
      for (const e of this.evicted.splice(0)) if (this.state[e.slot] === e.was) this.state[e.slot] = null;
    }
  }

  private *steps(): Steps<EngineEvent[]> {
    yield* this.prefill();
    const V = this.model.config.vocabSize;
    const events: EngineEvent[] = [];
    const decode: number[] = [];
    for (let i = 0; i < this.slots; i++) {
      const s = this.state[i];
      if (!s) continue;
      if (s.maxNew <= 0) {
        events.push(this.finish(i, null));
        continue;
      }
      if (!s.hasLogits) continue;
      const r = s.row;
      const logits = this.logits.subarray(i * V, (i + 1) * V);
      if (s.logprobs >= 0) this.rawLogits.set(logits); // the sampler's penalties edit the row in place
      const id = r.sampler.sample(logits, r.seen, r.counts);
      const piece: GenerationPiece = { id, text: r.accept(id) };
      if (s.logprobs >= 0) piece.logprob = tokenLogprobs(this.rawLogits, id, s.logprobs);
      s.hasLogits = false;
      if (r.done || r.ids.length >= s.maxNew) events.push(this.finish(i, piece));
      else {
        events.push({ slot: i, piece, result: null });
        decode.push(i);
      }
    }
    if (decode.length) yield* this.decode(decode);
    return events;
  }

  /** Finish slot i: flush its text into the last piece, free the slot. */
  private finish(i: number, piece: GenerationPiece | null): EngineEvent {
    const r = this.state[i]!.row;
    const tail = r.finishText();
    if (tail) piece = { id: piece?.id ?? -1, text: (piece?.text ?? '') + tail };
    this.state[i] = null;
    return { slot: i, piece, result: r.result() };
  }

  /**
   * Prefill chunks, first come first served, until this step's budget of prefillChunk tokens is
   * spent. The first waiting slot's chunk (T tokens) runs in one forward together with every other
   * waiting slot whose next chunk has the same length T (while the budget lasts), so requests that
   * arrive together are prefilled together; each request keeps its own chunk boundaries.
   */
  private *prefill(): Steps<void> {
    const V = this.model.config.vocabSize;
    const chunkOf = (s: Slot): number => Math.min(this.prefillChunk, s.row.promptIds.length - s.prefilled);
    let spent = 0;
    while (spent < this.prefillChunk) {
      const waiting: number[] = [];
      for (let j = 0; j < this.slots; j++) {
        const s = this.state[j];
        if (s && s.prefilled < s.row.promptIds.length) waiting.push(j);
      }
      if (waiting.length === 0) return;
      waiting.sort((a, b) => this.state[a]!.order - this.state[b]!.order);
      const T = chunkOf(this.state[waiting[0]]!);
      const group = [waiting[0]];
      for (const j of waiting.slice(1)) if (chunkOf(this.state[j]!) === T && spent + T * (group.length + 1) <= this.prefillChunk) group.push(j);
      group.sort((a, b) => this.state[a]!.sourceKey - this.state[b]!.sourceKey || a - b); // rows sharing a source adjacent
      const B = group.length;
      const sources = group.map((i) => this.state[i]!.source);
      this.acts.ensure(B, T, maxPromptLength(sources), -1);
      const logitRows: number[] = [];
      for (let b = 0; b < B; b++) {
        const s = this.state[group[b]]!;
        const p = s.row.promptIds;
        for (let t = 0; t < T; t++) this.acts.ids[b * T + t] = p[s.prefilled + t];
        this.acts.pos[b] = s.prefilled;
        this.cache.rows[b] = group[b];
        if (s.prefilled + T === p.length) logitRows.push(b * T + T - 1);
      }
      forwardPass(this.model, this.acts, {
        B,
        T,
        cache: this.cache,
        sources: sources.some((x) => x) ? sources : null,
        train: false,
        logitRows: Int32Array.from(logitRows),
        logits: this.batchLogits,
      });
      if (logitRows.length) yield [this.batchLogits.subarray(0, logitRows.length * V)];
      let r = 0;
      for (let b = 0; b < B; b++) {
        const i = group[b];
        const s = this.state[i]!;
        s.prefilled += T;
        s.pos = s.prefilled;
        s.hasLogits = s.prefilled === s.row.promptIds.length;
        if (s.hasLogits) {
          this.logits.set(this.batchLogits.subarray(r * V, (r + 1) * V), i * V);
          r++;
        }
      }
      spent += T * B;
    }
  }

  /** One decode forward for the given slots (each has just sampled a token): rows grouped by prompt source. */
  private *decode(slots: number[]): Steps<void> {
    const V = this.model.config.vocabSize;
    slots.sort((a, b) => this.state[a]!.sourceKey - this.state[b]!.sourceKey || a - b);
    const B = slots.length;
    const sources = slots.map((i) => this.state[i]!.source);
    this.acts.ensure(B, 1, maxPromptLength(sources), -1);
    for (let b = 0; b < B; b++) {
      const s = this.state[slots[b]]!;
      this.acts.ids[b] = s.row.ids[s.row.ids.length - 1];
      this.acts.pos[b] = s.pos;
      this.cache.rows[b] = slots[b];
    }
    forwardPass(this.model, this.acts, {
      B,
      T: 1,
      cache: this.cache,
      sources: sources.some((s) => s) ? sources : null,
      train: false,
      logitRows: null,
      logits: this.batchLogits,
    });
    yield [this.batchLogits.subarray(0, B * V)];
    for (let b = 0; b < B; b++) {
      const i = slots[b];
      const s = this.state[i]!;
      this.logits.set(this.batchLogits.subarray(b * V, (b + 1) * V), i * V);
      s.pos++;
      s.hasLogits = true;
    }
  }
}

/** The log-probability (log-softmax of the raw logits) of `id`, and the k most likely ids with theirs. */
function tokenLogprobs(logits: Float32Array, id: number, k: number): TokenLogprob & { top: TokenLogprob[] } {
  const V = logits.length;
  let max = -Infinity;
  for (let i = 0; i < V; i++) if (logits[i] > max) max = logits[i];
  let sum = 0;
  for (let i = 0; i < V; i++) sum += Math.exp(logits[i] - max);
  const lse = max + Math.log(sum);
  const top: TokenLogprob[] = []; // sorted, most likely first
  for (let i = 0; i < V && k > 0; i++) {
    const l = logits[i] - lse;
    if (top.length === k && l <= top[k - 1].logprob) continue;
    let j = top.length;
    while (j > 0 && top[j - 1].logprob < l) j--;
    top.splice(j, 0, { id: i, logprob: l });
    if (top.length > k) top.pop();
  }
  return { id, logprob: logits[id] - lse, top };
}

const sourceKeys = new WeakMap<PromptSource, number>();
let nextSourceKey = 1;

/** A number per prompt source object (see Slot.sourceKey). */
function sourceKey(src: PromptSource): number {
  let k = sourceKeys.get(src);
  if (k === undefined) sourceKeys.set(src, (k = nextSourceKey++));
  return k;
}
