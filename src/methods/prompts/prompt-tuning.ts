// Adaption prompts on any base model with a PromptHost (LLaMA or an encoder): learnable prompts
// P_l (K, D) in the top L layers, their keys/values through each layer's frozen projections
// (P Wk^T + bk, P Wv^T + bv: biases where the layer has them, no norm, no position), mixed into
// attention through the model's one prompt hook (model/method.ts) in one of three ways
// (../shared/reference/README.md, "ViT and RoBERTa with adaption prompts"):
//   'tanh' / 'raw'  LLaMA-Adapter's zero-init attention: a separate softmax over the K prompt keys,
//                   added with a per-head gate tanh(g_h) or g_h (gates start at 0: the base model
//                   exactly, and d loss / d prompts = 0 on the first step), or at N(0, 1) for the
//                   paper's random-init ablation;
//   'vpt'           the plain deep-prompt baseline (VPT-deep / deep prefix prompts): the prompt keys
//                   join the tokens in ONE softmax, no gate, so the prompts change the output from
//                   the start.
// Parameters are `layers.{l}.adaption_prompt` (K, D) and, gated, `layers.{l}.adaption_gate` (H),
// the names of the LLaMA adapter file. Prompt keys/values are cached per parameter version.

import { check, LlamaAdapterError } from '../../core/errors.js';
import { Rng } from '../../core/rng.js';
import type { PromptHost, PromptLayer, PromptSource, SourceGrads } from '../../model/method.js';
import { effectiveGates, type GateMode, gateParamGrad } from '../v1/gate.js';

export type PromptMode = 'tanh' | 'raw' | 'vpt';
export const PROMPT_MODES: readonly PromptMode[] = ['tanh', 'raw', 'vpt'];

const GATE_OF: Record<Exclude<PromptMode, 'vpt'>, GateMode> = { tanh: 'tanh-per-head', raw: 'raw-per-head' };

export interface PromptTuningConfig {
  mode: PromptMode;
  promptLength: number; // K
  adapterLayers: number; // L, the top L layers
}

export interface CreatePromptsOptions extends PromptTuningConfig {
  seed?: number; // prompts ~ N(0, promptScale^2) from this seed (default 0)
  promptScale?: number; // default 1 (as createAdapter)
  gateInit?: 'zero' | 'random'; // gated modes: zero (the method) or N(0, 1) (the paper's ablation)
}

const PARAM_RE = /^layers\.(\d+)\.adaption_(prompt|gate)$/;

/** Prompts over `host` (the PromptSource's identity) whose weights `view` gives (the same object for an encoder). */
export class PromptTuning<H> implements PromptSource<H> {
  readonly firstLayer: number;
  private readonly prompts: Float32Array[]; // per adapted layer (K, D)
  private readonly gates: Float32Array[]; // per adapted layer (H); empty for vpt
  private ver = 0;
  private readonly cache: (PromptLayer & { version: number })[];

  constructor(
    readonly host: H,
    readonly view: PromptHost,
    readonly config: PromptTuningConfig,
  ) {
    const a = view.attnShape;
    check((PROMPT_MODES as readonly string[]).includes(config.mode), `unknown prompt mode "${config.mode}" (expected ${PROMPT_MODES.join(', ')})`);
    check(
      Number.isInteger(config.promptLength) && config.promptLength >= 1 && config.promptLength <= 65536,
      `prompt length must be an integer from 1 to 65536 (got ${config.promptLength})`,
    );
    check(
      Number.isInteger(config.adapterLayers) && config.adapterLayers >= 1 && config.adapterLayers <= a.layers,
      `adapter layers must be between 1 and the model's ${a.layers} layers (got ${config.adapterLayers})`,
    );
    this.firstLayer = a.layers - config.adapterLayers;
    const K = config.promptLength,
      kv = a.kvHeads * a.headDim;
    this.prompts = Array.from({ length: config.adapterLayers }, () => new Float32Array(K * a.width));
    this.gates = Array.from({ length: config.adapterLayers }, () => new Float32Array(config.mode === 'vpt' ? 0 : a.heads));
    this.cache = Array.from({ length: config.adapterLayers }, () => ({
      K,
      pk: new Float32Array(K * kv),
      pv: new Float32Array(K * kv),
      gate: new Float32Array(a.heads),
      joint: config.mode === 'vpt',
      version: -1,
    }));
  }

  get promptLength(): number {
    return this.config.promptLength;
  }

  get version(): number {
    return this.ver;
  }

  /** Parameters then derived state (prompt keys/values, effective gates), in layer order. */
  tensors(): Map<string, Float32Array> {
    const m = new Map<string, Float32Array>();
    for (let i = 0; i < this.config.adapterLayers; i++) {
      const l = this.firstLayer + i;
      m.set(`layers.${l}.adaption_prompt`, this.prompts[i]);
      if (this.config.mode !== 'vpt') m.set(`layers.${l}.adaption_gate`, this.gates[i]);
      m.set(`layers.${l}.prompt_keys`, this.cache[i].pk);
      m.set(`layers.${l}.prompt_values`, this.cache[i].pv);
    }
    return m;
  }

  isParam(name: string): boolean {
    const m = PARAM_RE.exec(name);
    return m !== null && (m[2] === 'prompt' || this.config.mode !== 'vpt');
  }

  shapeOf(name: string): number[] {
    const a = this.view.attnShape;
    const m = PARAM_RE.exec(name);
    if (m) return m[2] === 'prompt' ? [this.config.promptLength, a.width] : [a.heads];
    if (/^layers\.\d+\.prompt_(keys|values)$/.test(name)) return [this.config.promptLength, a.kvHeads * a.headDim];
    throw new LlamaAdapterError(`"${name}" is not a tensor of these prompts`);
  }

  invalidate(): void {
    this.ver++;
  }

  promptLayer(l: number): PromptLayer | null {
    const i = l - this.firstLayer;
    if (i < 0 || i >= this.config.adapterLayers) return null;
    const e = this.cache[i];
    if (e.version !== this.ver) {
      const be = this.view.backend,
        K = this.config.promptLength;
      const { wk, bk, wv, bv } = this.view.promptProjections(l);
      be.matmul(e.pk, this.prompts[i], wk, K); // (K, kv)
      be.matmul(e.pv, this.prompts[i], wv, K);
      if (bk) be.biasAdd(e.pk, bk, K, wk.rows);
      if (bv) be.biasAdd(e.pv, bv, K, wv.rows);
      if (this.config.mode !== 'vpt') effectiveGates(GATE_OF[this.config.mode], this.gates[i], e.gate);
      e.version = this.ver;
    }
    return e;
  }

  /** dP = dpk Wk + dpv Wv per adapted layer; gates by their chain rule (biases carry no gradient to P). */
  paramGrads(hook: readonly SourceGrads<H>[], out: Map<string, Float32Array>): void {
    const be = this.view.backend,
      K = this.config.promptLength;
    check(hook.length === 1 && hook[0].source === this, 'prompt tuning: hook gradients from another prompt source');
    for (let i = 0; i < this.config.adapterLayers; i++) {
      const l = this.firstLayer + i,
        g = hook[0].layers[l];
      const { wk, wv } = this.view.promptProjections(l);
      const dP = out.get(`layers.${l}.adaption_prompt`)!;
      be.matmulBack(dP, g.dpk, wk, K);
      be.matmulBack(dP, g.dpv, wv, K, true);
      if (this.config.mode !== 'vpt') gateParamGrad(GATE_OF[this.config.mode], this.gates[i], g.dgate, out.get(`layers.${l}.adaption_gate`)!);
    }
  }
}

/** New prompts: N(0, scale^2) from `seed`, gates zero (or N(0, 1) with gateInit 'random'). */
export function createPrompts<H>(host: H, view: PromptHost, o: CreatePromptsOptions): PromptTuning<H> {
  const p = new PromptTuning(host, view, o);
  const rng = new Rng(o.seed ?? 0);
  const scale = o.promptScale ?? 1;
  for (const [name, t] of p.tensors()) {
    if (!p.isParam(name)) continue;
    const gate = name.endsWith('gate');
    if (gate && o.gateInit !== 'random') continue;
    for (let i = 0; i < t.length; i++) t[i] = rng.normal() * (gate ? 1 : scale);
  }
  p.invalidate();
  return p;
}
