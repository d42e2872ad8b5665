// LLaMA-Adapter v1: learnable adaption prompts (K, dim) in the top L layers and a zero-initialised
// gate per head (or per layer), mixed into attention through the model's one prompt hook
// (model/prompt-source.ts). The adapter owns its parameters and a per-version cache of the
// prompts' keys/values (P Wk^T, P Wv^T through the frozen projections) and effective gates, so
// inference computes them once per adapter version, not per token. Writing into the arrays
// returned by parameters() changes the adapter; call invalidate() afterwards.

import type { Backend } from '../../backend/backend.js';
import type { LlamaConfig } from '../../core/config.js';
import { check, LlamaAdapterError } from '../../core/errors.js';
import type { PromptLayerGrads } from '../../model/backward.js';
import type { PromptLayer, PromptSource } from '../../model/method.js';
import { Rng } from '../../core/rng.js';
import type { ModelWeights } from '../../core/weights.js';
import { effectiveGates, gateParamGrad, gateSize, isGateMode, type GateMode, GATE_RULES } from './gate.js';

/** What an adapter needs of the base model it extends. */
export interface AdapterHost {
  readonly config: LlamaConfig;
  readonly weights: ModelWeights;
  readonly backend: Backend;
  readonly fingerprint: string;
}

export interface AdapterConfig {
  promptLength: number; // K, prompt tokens per adapted layer
  layers: number; // L, number of adapted layers (the top L)
  gate: GateMode; // gate convention
}

export interface CreateAdapterOptions {
  promptLength?: number; // default 10 (paper)
  layers?: number; // default 30 (paper), at most the model's layer count
  gate?: GateMode; // default 'tanh-per-head'
  seed?: number; // prompt init N(0, 1) from this seed (default 0)
  /** 'zero' (the method) or 'random' (the paper's random-init ablation: gates ~ N(0, 1)). */
  gateInit?: 'zero' | 'random';
}

const PARAM_RE = /^layers\.(\d+)\.adaption_(prompt|gate)$/;

/** The one filter deciding both what trains and what an adapter file holds. */
export function isAdapterParam(name: string): boolean {
  return PARAM_RE.test(name);
}

export class Adapter implements PromptSource {
  readonly firstLayer: number;
  /** Free-form provenance saved in the file (training arguments etc.). */
  meta: Record<string, string> = {};
  private readonly prompts: Float32Array[]; // per adapted layer (K, dim)
  private readonly gates: Float32Array[]; // per adapted layer (nHeads) or (1)
  private version = 0;
  private readonly cache: (PromptLayer & { version: number })[]; // per adapted layer

  constructor(readonly host: AdapterHost, readonly config: AdapterConfig) {
    const c = host.config;
    check(Number.isInteger(config.promptLength) && config.promptLength >= 1, `adapter prompt length must be a positive integer (got ${config.promptLength})`);
    check(Number.isInteger(config.layers) && config.layers >= 1 && config.layers <= c.nLayers,
      `adapter layers must be between 1 and the model's ${c.nLayers} layers (got ${config.layers})`);
    check(isGateMode(config.gate), `unknown gate convention "${config.gate}" (expected ${Object.keys(GATE_RULES).join(', ')})`);
    this.firstLayer = c.nLayers - config.layers;
    const K = config.promptLength, kv = c.nKvHeads * c.headDim;
    this.prompts = Array.from({ length: config.layers }, () => new Float32Array(K * c.dim));
    this.gates = Array.from({ length: config.layers }, () => new Float32Array(gateSize(config.gate, c.nHeads)));
    this.cache = Array.from({ length: config.layers }, () => ({
      K, pk: new Float32Array(K * kv), pv: new Float32Array(K * kv), gate: new Float32Array(c.nHeads), version: -1,
    }));
  }

  /** Tensor name -> live parameter view, in layer order (prompt then gate). */
  parameters(): Map<string, Float32Array> {
    const m = new Map<string, Float32Array>();
    for (let i = 0; i < this.config.layers; i++) {
      const l = this.firstLayer + i;
      m.set(`layers.${l}.adaption_prompt`, this.prompts[i]);
      m.set(`layers.${l}.adaption_gate`, this.gates[i]);
    }
    return m;
  }

  /** Shape of a parameter tensor as stored in the adapter file. */
  shapeOf(name: string): number[] {
    const m = PARAM_RE.exec(name);
    if (!m) throw new LlamaAdapterError(`"${name}" is not an adapter parameter`);
    const c = this.host.config;
    return m[2] === 'prompt' ? [this.config.promptLength, c.dim] : [gateSize(this.config.gate, c.nHeads)];
  }

  /** Parameters changed: cached prompt keys/values must be recomputed. */
  invalidate(): void {
    this.version++;
  }

  /** Number of trainable parameters. */
  get parameterCount(): number {
    let n = 0;
    for (const p of this.parameters().values()) n += p.length;
    return n;
  }

  promptLayer(l: number): PromptLayer | null {
    const i = l - this.firstLayer;
    if (i < 0 || i >= this.config.layers) return null;
    const e = this.cache[i];
    if (e.version !== this.version) {
      const { backend: be, weights: W } = this.host;
      be.matmul(e.pk, this.prompts[i], W.layers[l].wk, this.config.promptLength); // (K, kvDim)
      be.matmul(e.pv, this.prompts[i], W.layers[l].wv, this.config.promptLength); // (K, kvDim)
      effectiveGates(this.config.gate, this.gates[i], e.gate);
      e.version = this.version;
    }
    return e;
  }

  /**
   * Turn hook gradients (d pk, d pv, d effective gate per adapted layer) into parameter
   * gradients, keyed like parameters(): dP = dpk Wk + dpv Wv; gates by the convention's chain rule.
   */
  paramGrads(hook: readonly PromptLayerGrads[], out: Map<string, Float32Array>): void {
    const { backend: be, weights: W } = this.host;
    for (let i = 0; i < this.config.layers; i++) {
      const l = this.firstLayer + i;
      const g = hook[l];
      const dP = out.get(`layers.${l}.adaption_prompt`)!;
      be.matmulBack(dP, g.dpk, W.layers[l].wk, this.config.promptLength);
      be.matmulBack(dP, g.dpv, W.layers[l].wv, this.config.promptLength, true);
      gateParamGrad(this.config.gate, this.gates[i], g.dgate, out.get(`layers.${l}.adaption_gate`)!);
    }
  }

  /** Zeroed arrays shaped like parameters(). */
  zerosLike(): Map<string, Float32Array> {
    const m = new Map<string, Float32Array>();
    for (const [k, v] of this.parameters()) m.set(k, new Float32Array(v.length));
    return m;
  }
}

/** A new adapter: prompts ~ N(0, 1) from `seed`, gates zero (so the model is unchanged). */
export function createAdapter(host: AdapterHost, o: CreateAdapterOptions = {}): Adapter {
  const a = new Adapter(host, {
    promptLength: o.promptLength ?? 10,
    layers: o.layers ?? Math.min(30, host.config.nLayers),
    gate: o.gate ?? 'tanh-per-head',
  });
  const rng = new Rng(o.seed ?? 0);
  for (const [name, p] of a.parameters()) {
    if (name.endsWith('prompt') || o.gateInit === 'random') for (let i = 0; i < p.length; i++) p[i] = rng.normal();
  }
  a.invalidate();
  return a;
}
