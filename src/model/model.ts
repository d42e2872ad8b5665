// LlamaModel: a loaded frozen base model (config, weights, tokenizer, backend) and its
// operations: forward (logits), loss, lossAndGrads (adapter training). Any number of adapters
// (AdapterMethods, model/method.ts) can run over one LlamaModel; each call or batch row names its
// own. Generation lives a layer above (generate/: the step-wise engine and its thin loops).
// Each operation is written once as Steps (backend/memory.ts: its sync points are yields) and
// comes twice: synchronous on a host backend (forward), and async on every backend (forwardAsync).

import type { Backend } from '../backend/backend.js';
import type { LlamaConfig } from '../core/config.js';
import { check, LlamaAdapterError } from '../core/errors.js';
import type { ModelFormat } from '../formats/model-file.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { isQuantized, type ModelWeights, type WeightDtype } from '../core/weights.js';
import { runAsync, runSync, type Steps } from '../backend/memory.js';
import { Activations } from './activations.js';
import { BackwardBuffers, backwardPass } from './backward.js';
import { forwardPass, type ForwardContext } from './forward.js';
import { zerosLike, type AdapterMethod, type MethodHost, type PromptSource, type SourceGrads } from './method.js';
import { ropeTables, type RopeTables } from './rope.js';

export interface ModelInfo {
  path: string; // what was loaded
  format: ModelFormat; // the model file's format
  sourceDtypes: string[]; // dtypes in the file
  dtype: WeightDtype; // dtype of the frozen matrices in memory (as requested; a GGUF's quantized tensors stay as stored)
}

export interface ForwardOptions {
  /** One adapter (or any prompt source) for every row, or one per row (null = base model for that row). */
  adapter?: PromptSource | null | readonly (PromptSource | null)[];
}

export interface LossAndGrads {
  loss: number; // mean cross-entropy over targets != -100
  tokens: number; // number of targets that carried loss
  grads: Map<string, Float32Array>; // keyed like trainableTensors(adapter)
}

export class LlamaModel implements ForwardContext, MethodHost {
  readonly rope: RopeTables;
  private acts: Activations;
  private bwd: BackwardBuffers;
  private feat: { B: number; T: number; rows: Int32Array; rstd: Float32Array; sources: PromptSource[] } | null = null; // the last training features() pass

  constructor(
    readonly config: LlamaConfig,
    readonly weights: ModelWeights,
    readonly tokenizer: Tokenizer,
    readonly backend: Backend,
    readonly fingerprint: string,
    readonly info: ModelInfo,
  ) {
    this.rope = ropeTables(config, config.maxSeqLen);
    // bf16 or quantized weights: the activations training saves for backward are stored in bf16
    // (half their memory; for a quantized base it is QLoRA's bf16 compute over a 4-bit model)
    this.acts = new Activations(config, info.dtype === 'bf16' || isQuantized(weights.layers[0].wq) || isQuantized(weights.layers[0].w2));
    this.bwd = new BackwardBuffers(config);
    // frozen: a device backend uploads them once (Matrix weights are frozen by contract)
    const w = weights;
    backend.memory.constant(this.rope.cos, this.rope.sin, w.outputNorm, ...w.layers.flatMap((L) => [L.attnNorm, L.ffnNorm]));
  }

  /** Shared activation workspace (grow-only), for generation and training loops. */
  get activations(): Activations {
    return this.acts;
  }

  /** Check a batch of token rows: same length, ids in range, within the context. */
  private checkTokens(tokens: readonly (readonly number[])[]): { B: number; T: number } {
    const B = tokens.length;
    check(B > 0, 'forward: empty batch');
    const T = tokens[0].length;
    check(T > 0, 'forward: empty token row');
    for (let b = 0; b < B; b++) {
      check(tokens[b].length === T, `forward: row ${b} has ${tokens[b].length} tokens, row 0 has ${T} (pad rows to one length)`);
      for (const id of tokens[b]) {
        if (!(Number.isInteger(id) && id >= 0 && id < this.config.vocabSize)) {
          throw new LlamaAdapterError(`forward: token id ${id} in row ${b} is outside the vocabulary (0..${this.config.vocabSize - 1})`);
        }
      }
    }
    check(T <= this.config.maxSeqLen, `input of ${T} tokens is longer than the model's context of ${this.config.maxSeqLen} tokens`);
    return { B, T };
  }

  private sources(adapter: ForwardOptions['adapter'], B: number): (PromptSource | null)[] | null {
    if (!adapter) return null;
    if (Array.isArray(adapter)) {
      check(adapter.length === B, `forward: ${adapter.length} adapters given for ${B} rows`);
      for (const a of adapter) if (a) this.checkOwn(a);
      return adapter.some((a) => a) ? [...adapter] : null;
    }
    const a = adapter as PromptSource;
    this.checkOwn(a);
    return new Array<PromptSource | null>(B).fill(a);
  }

  /** Throws unless the adapter (prompt source) was created for or loaded onto this model instance. */
  checkOwn(a: PromptSource): void {
    if (a.host !== this) throw new LlamaAdapterError('this adapter was created for or loaded onto another model instance');
  }

  /** Logits (B, T, vocab), row-major, for equal-length rows of token ids (host backends; forwardAsync runs everywhere). */
  forward(tokens: readonly (readonly number[])[], options: ForwardOptions = {}): Float32Array {
    return runSync(this.backend.memory, this.forwardSteps(tokens, options), 'forwardAsync');
  }

  /** forward() on any backend, a device one included. */
  forwardAsync(tokens: readonly (readonly number[])[], options: ForwardOptions = {}): Promise<Float32Array> {
    return runAsync(this.backend.memory, this.forwardSteps(tokens, options));
  }

  private *forwardSteps(tokens: readonly (readonly number[])[], options: ForwardOptions): Steps<Float32Array> {
    const { B, T } = this.checkTokens(tokens);
    const src = this.sources(options.adapter, B);
    this.acts.ensure(B, T, maxPromptLength(src), -1);
    const ids = this.acts.ids;
    for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) ids[b * T + t] = tokens[b][t];
    this.acts.pos.fill(0, 0, B);
    const logits = new Float32Array(B * T * this.config.vocabSize);
    forwardPass(this, this.acts, { B, T, cache: null, sources: src, train: false, logitRows: null, logits });
    yield [logits];
    return logits;
  }

  /**
   * Mean next-token cross-entropy of the adapter's model and its gradient with respect to the
   * adapter's parameters. targets[b][t] is the id position t must predict; -100 = no loss.
   * `sources` gives each row its own prompt source made by `adapter` (e.g. the adapter with that
   * row's image; the adapter's paramGrads maps their gradients back); default: the adapter itself.
   */
  lossAndGrads(
    tokens: readonly (readonly number[])[],
    targets: readonly (readonly number[])[],
    adapter: AdapterMethod,
    into?: Map<string, Float32Array>,
    sources?: readonly PromptSource[],
  ): LossAndGrads {
    return runSync(this.backend.memory, this.lossAndGradsSteps(tokens, targets, adapter, into, sources), 'lossAndGradsAsync');
  }

  /** lossAndGrads() on any backend, a device one included (the gradients are on the host when it resolves). */
  lossAndGradsAsync(
    tokens: readonly (readonly number[])[],
    targets: readonly (readonly number[])[],
    adapter: AdapterMethod,
    into?: Map<string, Float32Array>,
    sources?: readonly PromptSource[],
  ): Promise<LossAndGrads> {
    return runAsync(this.backend.memory, this.lossAndGradsSteps(tokens, targets, adapter, into, sources));
  }

  private *lossAndGradsSteps(
    tokens: readonly (readonly number[])[],
    targets: readonly (readonly number[])[],
    adapter: AdapterMethod,
    into?: Map<string, Float32Array>,
    sources?: readonly PromptSource[],
  ): Steps<LossAndGrads> {
    const { B, T } = this.checkTokens(tokens);
    this.checkOwn(adapter);
    const src = sources ?? new Array<PromptSource>(B).fill(adapter);
    check(src.length === B, `lossAndGrads: ${src.length} prompt sources given for ${B} rows`);
    for (const s of src) {
      this.checkOwn(s);
      check(
        s.firstLayer === adapter.firstLayer && s.promptLength === adapter.promptLength,
        "lossAndGrads: a row source does not have the adapter's layers and prompt length",
      );
    }
    const { rows, tg } = this.lossRows(targets, B, T);
    const grads = into ?? zerosLike(adapter);
    const r = yield* this.trainSteps(tokens, B, T, rows, tg, adapter, grads, src);
    return { loss: r, tokens: rows.length, grads };
  }

  /** The (b*T + t) rows that carry loss and their target ids; targets checked against the vocabulary. */
  private lossRows(targets: readonly (readonly number[])[], B: number, T: number): { rows: Int32Array; tg: Int32Array } {
    check(targets.length === B && targets.every((r) => r.length === T), 'targets must have the shape of tokens');
    const rows: number[] = [];
    const tg: number[] = [];
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        const y = targets[b][t];
        if (y === -100) continue;
        check(Number.isInteger(y) && y >= 0 && y < this.config.vocabSize, `target ${y} at [${b}, ${t}] is outside the vocabulary (use -100 for no loss)`);
        rows.push(b * T + t);
        tg.push(y);
      }
    }
    return { rows: Int32Array.from(rows), tg: Int32Array.from(tg) };
  }

  /** Mean cross-entropy (no gradients) with an optional adapter (or one prompt source per row); returns { loss, tokens }. */
  loss(
    tokens: readonly (readonly number[])[],
    targets: readonly (readonly number[])[],
    adapter: ForwardOptions['adapter'] = null,
  ): { loss: number; tokens: number } {
    return runSync(this.backend.memory, this.lossSteps(tokens, targets, adapter), 'lossAsync');
  }

  /** loss() on any backend, a device one included. */
  lossAsync(
    tokens: readonly (readonly number[])[],
    targets: readonly (readonly number[])[],
    adapter: ForwardOptions['adapter'] = null,
  ): Promise<{ loss: number; tokens: number }> {
    return runAsync(this.backend.memory, this.lossSteps(tokens, targets, adapter));
  }

  private *lossSteps(
    tokens: readonly (readonly number[])[],
    targets: readonly (readonly number[])[],
    adapter: ForwardOptions['adapter'],
  ): Steps<{ loss: number; tokens: number }> {
    const { B, T } = this.checkTokens(tokens);
    const { rows, tg } = this.lossRows(targets, B, T);
    if (rows.length === 0) return { loss: 0, tokens: 0 };
    const src = this.sources(adapter, B);
    this.acts.ensure(B, T, maxPromptLength(src), -1);
    for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) this.acts.ids[b * T + t] = tokens[b][t];
    this.acts.pos.fill(0, 0, B);
    const V = this.config.vocabSize;
    const { logits, rowLoss } = this.acts.lossBuffers(rows.length, V);
    forwardPass(this, this.acts, { B, T, cache: null, sources: src, train: false, logitRows: rows, logits });
    this.backend.crossEntropy(logits, tg, rows.length, V, null, 1, rowLoss);
    yield [rowLoss];
    return { loss: sum(rowLoss) / rows.length, tokens: rows.length };
  }

  /**
   * Forward + backward on prepared rows; writes grads, returns the mean loss (0 if no targets). Its
   * sync points: the loss and the hook gradients of the gates (the gate rule runs on the host), then
   * the parameter gradients (the caller reads them).
   */
  private *trainSteps(
    tokens: readonly (readonly number[])[],
    B: number,
    T: number,
    logitRows: Int32Array,
    targets: Int32Array,
    adapter: AdapterMethod,
    grads: Map<string, Float32Array>,
    sources: readonly PromptSource[] = new Array<PromptSource>(B).fill(adapter),
  ): Steps<number> {
    const mem = this.backend.memory;
    const n = logitRows.length;
    if (n === 0) {
      for (const g of grads.values()) mem.fill(g, 0, 0, g.length);
      yield [...grads.values()];
      return 0;
    }
    const acts = this.acts;
    acts.ensure(B, T, adapter.promptLength, adapter.firstLayer);
    for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) acts.ids[b * T + t] = tokens[b][t];
    acts.pos.fill(0, 0, B);
    const V = this.config.vocabSize;
    const { logits, finalRstd, rowLoss } = acts.lossBuffers(n, V);
    forwardPass(this, acts, { B, T, cache: null, sources, train: true, logitRows, logits, finalRstd });
    this.backend.crossEntropy(logits, targets, n, V, logits, 1 / n, rowLoss);
    this.bwd.ensure(B * T, adapter.promptLength);
    const hook = backwardPass(this, acts, this.bwd, sources, B, T, logitRows, logits, finalRstd);
    yield [rowLoss, ...hook.flatMap((g) => g.layers.slice(adapter.firstLayer).map((x) => x.dgate))];
    adapter.paramGrads(hook, grads);
    yield [...grads.values()];
    return sum(rowLoss) / n;
  }

  /**
   * Task features (the model as a frozen backbone for a task head): the final-normed hidden states
   * (n, dim) at `rows` (b*T + t) of equal-length token rows, with `source` (a prompt source of this
   * model) in every row, or none. `train` (with a source) keeps what featuresBackward needs.
   */
  features(tokens: readonly (readonly number[])[], rows: Int32Array, source: PromptSource | null, train: boolean): Float32Array {
    const { B, T } = this.checkTokens(tokens);
    if (source) this.checkOwn(source);
    for (const r of rows) check(r >= 0 && r < B * T, `features: row ${r} is outside the ${B} x ${T} batch`);
    const training = train && source !== null;
    const acts = this.acts;
    acts.ensure(B, T, source?.promptLength ?? 1, training ? source.firstLayer : -1);
    for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) acts.ids[b * T + t] = tokens[b][t];
    acts.pos.fill(0, 0, B);
    const n = rows.length,
      hidden = new Float32Array(n * this.config.dim),
      rstd = new Float32Array(n);
    const sources = source ? new Array<PromptSource>(B).fill(source) : null;
    forwardPass(this, acts, { B, T, cache: null, sources, train: training, logitRows: rows, logits: hidden, finalRstd: rstd, hidden });
    this.feat = training && sources ? { B, T, rows: rows.slice(), rstd, sources } : null;
    return hidden;
  }

  /** The hook gradients of the last training features() pass, from d features (n, dim). */
  featuresBackward(dFeatures: Float32Array): SourceGrads[] {
    const st = this.feat;
    check(st !== null, 'featuresBackward: no training features() pass with a prompt source ran before it');
    check(
      dFeatures.length === st.rows.length * this.config.dim,
      `featuresBackward: ${dFeatures.length} values, expected ${st.rows.length} x ${this.config.dim}`,
    );
    this.bwd.ensure(st.B * st.T, st.sources[0].promptLength);
    return backwardPass(this, this.acts, this.bwd, st.sources, st.B, st.T, st.rows, dFeatures, st.rstd, dFeatures);
  }
}

/** The sum of a loss buffer, in double (the order the oracle's crossEntropy adds rows in). */
function sum(a: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i];
  return s;
}

/** The longest prompt length K among the rows' sources (1 when none: buffers need a size). */
export function maxPromptLength(src: readonly (PromptSource | null)[] | null): number {
  let K = 1;
  for (const s of src ?? []) if (s) K = Math.max(K, s.promptLength);
  return K;
}
