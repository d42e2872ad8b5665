// LLaMA-Adapter v1: learnable adaption prompts (K, D) in the top L layers and a zero-initialised
// gate per head (or per layer), mixed into attention through the model's one prompt hook
// (model/method.ts: this class is an AdapterMethod). The adapter owns its parameters and a
// per-version cache of the prompts' keys/values (P Wk^T, P Wv^T through the frozen projections)
// and effective gates, so inference computes them once per adapter version, not per token.
// Writing into the arrays returned by parameters() changes the adapter; call invalidate() after.

import { check, LlamaAdapterError } from '../../core/errors.js';
import { trainableTensors, type AdapterMethod, type MethodHost, type PromptLayer, type PromptSource, type SourceGrads } from '../../model/method.js';
import { Rng } from '../../core/rng.js';
import type { Matrix } from '../../core/weights.js';
import { effectiveGates, gateParamGrad, gateSize, isGateMode, type GateMode, GATE_RULES } from './gate.js';
import { isPromptProjection, litgptSplitProjections, PROMPT_PROJECTIONS, type PromptProjection } from './prompt-projection.js';

export interface AdapterConfig {
  promptLength: number; // K, prompt tokens per adapted layer
  adapterLayers: number; // L, number of adapted layers (the top L)
  gate: GateMode; // gate convention
  /** How prompts become keys/values: 'standard' (wk / wv, default) or 'litgpt-split' (emulates litgpt's defect; prompt-projection.ts). */
  promptProjection?: PromptProjection;
}

export interface CreateAdapterOptions {
  promptLength?: number; // K, default 10 (paper)
  adapterLayers?: number; // L, default 30 (paper), at most the model's layer count
  gate?: GateMode; // default 'tanh-per-head'
  seed?: number; // prompt init N(0, 1) from this seed (default 0)
  /** 'zero' (the method) or 'random' (the paper's random-init ablation: gates ~ N(0, 1)). */
  gateInit?: 'zero' | 'random';
}

const PARAM_RE = /^layers\.(\d+)\.adaption_(prompt|gate)$/;
const DERIVED_RE = /^layers\.(\d+)\.(prompt_keys|prompt_values|effective_gate)$/;

/** The one filter deciding both what trains and what an adapter file holds (Adapter.isParam). */
export function isAdapterParam(name: string): boolean {
  return PARAM_RE.test(name);
}

export class Adapter implements AdapterMethod {
  readonly firstLayer: number;
  /** Free-form provenance saved in the file (training arguments etc.). */
  meta: Record<string, string> = {};
  private readonly prompts: Float32Array[]; // per adapted layer (K, dim)
  private readonly gates: Float32Array[]; // per adapted layer (nHeads) or (1)
  private ver = 0;
  private readonly cache: (PromptLayer & { version: number })[]; // per adapted layer
  private readonly proj: ({ wk: Matrix; wv: Matrix } | null)[]; // per adapted layer, 'litgpt-split' only (built on first use)

  constructor(
    readonly host: MethodHost,
    readonly config: AdapterConfig,
  ) {
    const c = host.config;
    check(
      Number.isInteger(config.promptLength) && config.promptLength >= 1 && config.promptLength <= c.maxSeqLen,
      `adapter prompt length must be an integer from 1 to the model's context of ${c.maxSeqLen} tokens (got ${config.promptLength})`,
    );
    check(
      Number.isInteger(config.adapterLayers) && config.adapterLayers >= 1 && config.adapterLayers <= c.nLayers,
      `adapter layers must be between 1 and the model's ${c.nLayers} layers (got ${config.adapterLayers})`,
    );
    check(isGateMode(config.gate), `unknown gate convention "${config.gate}" (expected ${Object.keys(GATE_RULES).join(', ')})`);
    const pp = config.promptProjection ?? 'standard';
    check(isPromptProjection(pp), `unknown prompt projection "${pp}" (expected ${Object.keys(PROMPT_PROJECTIONS).join(', ')})`);
    this.firstLayer = c.nLayers - config.adapterLayers;
    const K = config.promptLength,
      kv = c.nKvHeads * c.headDim;
    this.prompts = Array.from({ length: config.adapterLayers }, () => new Float32Array(K * c.dim));
    this.gates = Array.from({ length: config.adapterLayers }, () => new Float32Array(gateSize(config.gate, c.nHeads)));
    this.cache = Array.from({ length: config.adapterLayers }, () => ({
      K,
      pk: new Float32Array(K * kv),
      pv: new Float32Array(K * kv),
      gate: new Float32Array(c.nHeads),
      version: -1,
    }));
    this.proj = new Array(config.adapterLayers).fill(null);
  }

  get promptLength(): number {
    return this.config.promptLength;
  }

  /**
   * Every tensor, in layer order: the parameters `layers.{l}.adaption_prompt` (K, D) and
   * `layers.{l}.adaption_gate` (H or 1), and what is derived from them, `layers.{l}.prompt_keys`
   * and `prompt_values` (K, Hkv*hs) and `layers.{l}.effective_gate` (H), as of the last
   * promptLayer(l) call (reading computes nothing; the model refreshes them on every use).
   */
  tensors(): Map<string, Float32Array> {
    const m = new Map<string, Float32Array>();
    for (let i = 0; i < this.config.adapterLayers; i++) {
      const l = this.firstLayer + i;
      const p = this.cache[i];
      m.set(`layers.${l}.adaption_prompt`, this.prompts[i]);
      m.set(`layers.${l}.adaption_gate`, this.gates[i]);
      m.set(`layers.${l}.prompt_keys`, p.pk);
      m.set(`layers.${l}.prompt_values`, p.pv);
      m.set(`layers.${l}.effective_gate`, p.gate);
    }
    return m;
  }

  isParam(name: string): boolean {
    return isAdapterParam(name);
  }

  /** The trainable (and saved) tensors: live views, in layer order (prompt then gate). */
  parameters(): Map<string, Float32Array> {
    return trainableTensors(this);
  }

  /** Shape of a tensor as stored (parameters as in the adapter file). */
  shapeOf(name: string): number[] {
    const c = this.host.config;
    const m = PARAM_RE.exec(name);
    if (m) return m[2] === 'prompt' ? [this.config.promptLength, c.dim] : [gateSize(this.config.gate, c.nHeads)];
    const d = DERIVED_RE.exec(name);
    if (d) return d[2] === 'effective_gate' ? [c.nHeads] : [this.config.promptLength, c.nKvHeads * c.headDim];
    throw new LlamaAdapterError(`"${name}" is not a tensor of this adapter`);
  }

  /**
   * Parameters changed: cached prompt keys/values must be recomputed, and the host copies of the
   * parameters are the truth (on a device backend they are uploaded again before the next use).
   */
  invalidate(): void {
    this.ver++;
    this.host.backend.memory.upload(...this.prompts, ...this.gates);
  }

  /** Number of trainable parameters. */
  get parameterCount(): number {
    let n = 0;
    for (const p of this.parameters().values()) n += p.length;
    return n;
  }

  /** The (Hkv*hs, dim) projections that make adapted layer l's prompt keys and values (the layer's wk / wv unless litgpt-split). */
  projections(l: number): { wk: Matrix; wv: Matrix } {
    const w = this.host.weights.layers[l];
    if ((this.config.promptProjection ?? 'standard') === 'standard') return w;
    const i = l - this.firstLayer;
    this.proj[i] ??= litgptSplitProjections(this.host.config, w);
    return this.proj[i];
  }

  promptLayer(l: number): PromptLayer | null {
    const i = l - this.firstLayer;
    if (i < 0 || i >= this.config.adapterLayers) return null;
    const e = this.cache[i];
    if (e.version !== this.ver) {
      const be = this.host.backend;
      const { wk, wv } = this.projections(l);
      be.matmul(e.pk, this.prompts[i], wk, this.config.promptLength); // (K, kvDim)
      be.matmul(e.pv, this.prompts[i], wv, this.config.promptLength); // (K, kvDim)
      effectiveGates(this.config.gate, this.gates[i], e.gate);
      e.version = this.ver;
    }
    return e;
  }

  /** Bumped by invalidate(): derived state computed at an older version is stale. */
  get version(): number {
    return this.ver;
  }

  /**
   * A per-request prompt source: this adapter with `offset` (D) added to every prompt row of every
   * adapted layer, P_l + repeat(offset) (the multimodal method's projected image feature). Its
   * keys/values are P_l Wk^T + repeat(offset Wk^T): the adapter's cached ones plus one (1, D)
   * product per layer, recomputed when the adapter changes.
   */
  withOffset(offset: Float32Array): PromptSource {
    check(offset.length === this.host.config.dim, `prompt offset has ${offset.length} values, the model's width is ${this.host.config.dim}`);
    return new OffsetPrompts(this, offset.slice());
  }

  /**
   * Turn hook gradients (d pk, d pv, d effective gate per adapted layer, summed over the row groups:
   * a prompt offset is constant, so every group's rows see the same P_l) into parameter gradients,
   * keyed like parameters(): dP = dpk Wk + dpv Wv; gates by the convention's chain rule, on the
   * host (the model syncs the hook's dgate arrays first: memory.ts).
   */
  paramGrads(hook: readonly SourceGrads[], out: Map<string, Float32Array>): void {
    const be = this.host.backend;
    const c = this.host.config;
    const K = this.config.promptLength,
      kv = c.nKvHeads * c.headDim;
    for (let i = 0; i < this.config.adapterLayers; i++) {
      const l = this.firstLayer + i;
      let g = hook[0].layers[l];
      if (hook.length > 1) {
        const sum = { dpk: new Float32Array(K * kv), dpv: new Float32Array(K * kv), dgate: new Float32Array(c.nHeads) };
        for (const h of hook) {
          be.add(sum.dpk, h.layers[l].dpk, K * kv);
          be.add(sum.dpv, h.layers[l].dpv, K * kv);
          for (let j = 0; j < c.nHeads; j++) sum.dgate[j] += h.layers[l].dgate[j];
        }
        g = sum;
      }
      const dP = out.get(`layers.${l}.adaption_prompt`)!;
      const { wk, wv } = this.projections(l);
      be.matmulBack(dP, g.dpk, wk, K);
      be.matmulBack(dP, g.dpv, wv, K, true);
      gateParamGrad(this.config.gate, this.gates[i], g.dgate, out.get(`layers.${l}.adaption_gate`)!);
    }
  }
}

/** Adapter.withOffset(): the adapter's prompt branch with a constant (D) offset on every prompt row. */
class OffsetPrompts implements PromptSource {
  readonly host: MethodHost;
  readonly firstLayer: number;
  readonly promptLength: number;
  private readonly cache: (PromptLayer & { version: number })[]; // per adapted layer
  private readonly row: Float32Array; // (Hkv*hs) offset Wk^T or Wv^T, scratch

  constructor(
    private readonly adapter: Adapter,
    private readonly offset: Float32Array,
  ) {
    const c = adapter.host.config,
      K = adapter.promptLength,
      kv = c.nKvHeads * c.headDim;
    this.host = adapter.host;
    this.firstLayer = adapter.firstLayer;
    this.promptLength = K;
    this.cache = Array.from({ length: adapter.config.adapterLayers }, () => ({
      K,
      pk: new Float32Array(K * kv),
      pv: new Float32Array(K * kv),
      gate: new Float32Array(c.nHeads),
      version: -1,
    }));
    this.row = new Float32Array(kv);
  }

  promptLayer(l: number): PromptLayer | null {
    const base = this.adapter.promptLayer(l);
    if (!base) return null;
    const e = this.cache[l - this.firstLayer];
    if (e.version !== this.adapter.version) {
      const be = this.host.backend;
      const kv = this.row.length;
      const { wk, wv } = this.adapter.projections(l);
      for (const [dst, src, w] of [
        [e.pk, base.pk, wk],
        [e.pv, base.pv, wv],
      ] as const) {
        be.matmul(this.row, this.offset, w, 1); // (1, kvDim)
        be.memory.copy(dst, 0, src, 0, base.K * kv);
        for (let k = 0; k < base.K; k++) be.add(dst.subarray(k * kv, (k + 1) * kv), this.row, kv);
      }
      e.gate.set(base.gate);
      e.version = this.adapter.version;
    }
    return e;
  }
}

/** A new adapter: prompts ~ N(0, 1) from `seed`, gates zero (so the model is unchanged). */
export function createAdapter(host: MethodHost, o: CreateAdapterOptions = {}): Adapter {
  const a = new Adapter(host, {
    promptLength: o.promptLength ?? 10,
    adapterLayers: o.adapterLayers ?? Math.min(30, host.config.nLayers),
    gate: o.gate ?? 'tanh-per-head',
  });
  const rng = new Rng(o.seed ?? 0);
  for (const [name, p] of a.parameters()) {
    if (name.endsWith('prompt') || o.gateInit === 'random') for (let i = 0; i < p.length; i++) p[i] = rng.normal();
  }
  a.invalidate();
  return a;
}
