// What a fine-tuning method gives the base model, and all the model knows of one. The model
// imports no method: LLaMA-Adapter v1 (methods/v1) implements these interfaces today; v2 (bias,
// scale and norm tuning: hooks into linear layers and norms) and multimodal prompts (a per-request
// PromptSource whose prompts carry an image offset) plug in the same way. The encoders
// (model/encoders: ViT, RoBERTa) take the same hook; their methods (methods/prompts) are PromptSources
// whose host is the encoder (the H type parameter) and which reach its weights through PromptHost.
//
//   PromptSource   the attention hook, per batch row: prompt keys/values and effective gates
//   AdapterMethod  a trainable PromptSource: named tensors, the one filter deciding what trains
//                  and what is saved, and the gradient rule from hook gradients to parameters
//   PromptHost     what a prompt method may use of any base model (LLaMA or an encoder)

import type { Backend } from '../backend/backend.js';
import type { LlamaConfig } from '../core/config.js';
import type { Matrix, ModelWeights } from '../core/weights.js';

/** One adapted layer's prompt branch, as the attention hook returns it. */
export interface PromptLayer {
  K: number; // prompt length
  pk: Float32Array; // (K, Hkv*hs) prompt keys  P Wk^T (no norm, no RoPE)
  pv: Float32Array; // (K, Hkv*hs) prompt values P Wv^T
  gate: Float32Array; // (H) effective gate per head (tanh applied if the convention says so)
  /**
   * The plain deep-prompt baseline (`vpt`): the prompts join the tokens in ONE softmax and no gate
   * applies (`gate` is unused). Absent / false: the zero-init gated, separately softmaxed branch.
   */
  joint?: boolean;
}

/**
 * The attention hook: at each layer the attention asks the row's PromptSource for that layer's
 * prompt keys/values and gates and adds the gated, separately softmaxed prompt branch. Rows whose
 * PromptSource is the same object share one kernel call; a PromptSource is identified by object
 * identity, so a per-request source (e.g. prompts plus image features) is simply another object.
 */
export interface PromptSource<H = MethodHost> {
  /** The base model instance whose projections made the prompt keys/values. */
  readonly host: H;
  /** Lowest adapted layer (layers below it are untouched, and backward stops there). */
  readonly firstLayer: number;
  /** K, prompt tokens per adapted layer (computes nothing). */
  readonly promptLength: number;
  /** Prompt keys/values and gates of layer l, or null if l is not adapted. Cached per version. */
  promptLayer(l: number): PromptLayer | null;
}

/** Gradients with respect to one adapted layer's hook outputs (what backward produces). */
export interface PromptLayerGrads {
  dpk: Float32Array; // (K, Hkv*hs)
  dpv: Float32Array; // (K, Hkv*hs)
  dgate: Float32Array; // (H) d loss / d effective gate (0 for a joint layer)
}

/**
 * The hook gradients of one group of rows that shared a prompt source in a training pass: per layer
 * (indexed by absolute layer; entries below the source's firstLayer are unused). A batch whose rows
 * all use the method itself has one group; a multimodal batch has one per image.
 */
export interface SourceGrads<H = MethodHost> {
  source: PromptSource<H>; // the rows' prompt source (the method, or one it made, e.g. with an image offset)
  layers: readonly PromptLayerGrads[];
}

/** What a method may use of the base model it extends (LlamaModel implements it). */
export interface MethodHost {
  readonly config: LlamaConfig;
  readonly weights: ModelWeights;
  readonly backend: Backend;
  readonly fingerprint: string; // hash of the base weights (adapter files name their base by it)
  readonly info?: { readonly sourceDtypes: readonly string[] }; // dtypes of the model file (third-party adapters are checked against them)
}

/** The frozen projections that make one layer's prompt keys / values: P Wk^T (+ bk), P Wv^T (+ bv). */
export interface PromptProjections {
  wk: Matrix; // (Hkv*hs, D)
  bk: Float32Array | null; // (Hkv*hs) key bias (encoders), null for LLaMA
  wv: Matrix; // (Hkv*hs, D)
  bv: Float32Array | null; // (Hkv*hs)
}

/** What a prompt method needs of any base model: its attention shape and each layer's frozen key/value projections. */
export interface PromptHost {
  readonly backend: Backend;
  readonly fingerprint: string; // hash of the base weights
  readonly attnShape: { width: number; layers: number; heads: number; kvHeads: number; headDim: number }; // D, N, H, Hkv, hs
  promptProjections(l: number): PromptProjections;
}

/** A trainable extension of one base model. */
export interface AdapterMethod<H = MethodHost> extends PromptSource<H> {
  /**
   * Every tensor the method holds, name -> live array: its parameters and what it derives from
   * them (prompt keys/values, effective gates; refreshed on reading). Which of them train and
   * are saved is decided by `isParam` alone (see trainableTensors).
   */
  tensors(): Map<string, Float32Array>;
  /** The one filter: true for tensors that train and that an adapter file holds. */
  isParam(name: string): boolean;
  /** Shape of a tensor as stored. */
  shapeOf(name: string): number[];
  /** Parameters were written: derived state (cached prompt keys/values) must be recomputed. */
  invalidate(): void;
  /**
   * Chain rule from hook gradients to parameter gradients, keyed like trainableTensors (overwritten):
   * one entry per group of rows that shared a prompt source (the method itself, or per-row sources
   * it made), in batch order.
   */
  paramGrads(hook: readonly SourceGrads<H>[], out: Map<string, Float32Array>): void;
}

/** The tensors of `m` that train and are saved: tensors() filtered by isParam, in order. */
export function trainableTensors(m: Pick<AdapterMethod, 'tensors' | 'isParam'>): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const [name, t] of m.tensors()) if (m.isParam(name)) out.set(name, t);
  return out;
}

/** Zeroed arrays shaped like trainableTensors(m) (gradient buffers). */
export function zerosLike(m: Pick<AdapterMethod, 'tensors' | 'isParam'>): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const [name, t] of trainableTensors(m)) out.set(name, new Float32Array(t.length));
  return out;
}
