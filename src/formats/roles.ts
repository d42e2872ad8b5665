// The canonical tensor roles of a LLaMA model (GGUF's names), in one table: which field of the
// canonical weights (core/weights.ts) each role fills, whether it is a matrix or a norm, and its
// shape in terms of the config. Every format maps its own tensor names onto these roles (HF keys
// in hf.ts, llama2.c arrays in llama2c.ts, later GGUF), and assemble.ts builds the weights from
// them, so the list of a layer's tensors and their shapes is written only here.
//   tok_embd (vocab, dim)                      output (vocab, dim)  [the same object as tok_embd when tied]
//   output_norm (dim)
//   blk.{i}.attn_norm (dim)                    blk.{i}.ffn_norm (dim)
//   blk.{i}.attn_q (nHeads*headDim, dim)       blk.{i}.attn_k / attn_v (nKvHeads*headDim, dim)
//   blk.{i}.attn_output (dim, nHeads*headDim)
//   blk.{i}.ffn_gate (hidden, dim)  [w1]       blk.{i}.ffn_up (hidden, dim) [w3]
//   blk.{i}.ffn_down (dim, hidden)  [w2]
// RoPE convention: q/k rows are in the interleaved (Meta / llama2.c) order; a format that stores
// them otherwise (HF: rotate-half) permutes them at load, in heads of `ropeHeads`.
import type { ConfigFieldNames, LlamaConfig } from '../core/config.js';
import type { LayerWeights, Matrix, ModelWeights } from '../core/weights.js';

/** Config fields that tensor dimensions are made of. */
type ConfigDim = 'dim' | 'hiddenDim' | 'vocabSize' | 'nHeads' | 'nKvHeads' | 'headDim';

/** One dimension: the product of these config fields. */
type DimExpr = readonly ConfigDim[];

/** The keys of T whose values are V. */
type FieldsOf<T, V> = { [K in keyof T]-?: T[K] extends V ? K : never }[keyof T];

/** One role of the table: a norm vector (n) or a matrix (rows, cols) in field `field` of W. */
export type RoleSpec<W> =
  | { readonly kind: 'norm'; readonly field: FieldsOf<W, Float32Array>; readonly dims: readonly [DimExpr] }
  | {
      readonly kind: 'matrix';
      readonly field: FieldsOf<W, Matrix>;
      readonly dims: readonly [DimExpr, DimExpr];
      /** The rows are RoPE-rotated, in heads of headDim rows: this many heads. */
      readonly ropeHeads?: 'nHeads' | 'nKvHeads';
    };

export type LayerRole = 'attn_norm' | 'attn_q' | 'attn_k' | 'attn_v' | 'attn_output' | 'ffn_norm' | 'ffn_gate' | 'ffn_up' | 'ffn_down';
export type ModelRole = 'tok_embd' | 'output_norm' | 'output';
export type Role = LayerRole | ModelRole;

/**
 * `table` as given, checked at compile time: it has every role R (Record<R, ...>) and fills every
 * field of W (an unfilled field is a type error that names it).
 */
function roleTable<W, R extends string>() {
  return <const T extends Record<R, RoleSpec<W>>>(table: T & Record<Exclude<keyof W, T[R]['field']>, never>): T => table;
}

/** A transformer block's tensors, in the order formats usually store them. */
export const LAYER_ROLES = roleTable<LayerWeights, LayerRole>()({
  attn_norm: { kind: 'norm', field: 'attnNorm', dims: [['dim']] },
  attn_q: { kind: 'matrix', field: 'wq', dims: [['nHeads', 'headDim'], ['dim']], ropeHeads: 'nHeads' },
  attn_k: { kind: 'matrix', field: 'wk', dims: [['nKvHeads', 'headDim'], ['dim']], ropeHeads: 'nKvHeads' },
  attn_v: { kind: 'matrix', field: 'wv', dims: [['nKvHeads', 'headDim'], ['dim']] },
  attn_output: { kind: 'matrix', field: 'wo', dims: [['dim'], ['nHeads', 'headDim']] },
  ffn_norm: { kind: 'norm', field: 'ffnNorm', dims: [['dim']] },
  ffn_gate: { kind: 'matrix', field: 'w1', dims: [['hiddenDim'], ['dim']] },
  ffn_up: { kind: 'matrix', field: 'w3', dims: [['hiddenDim'], ['dim']] },
  ffn_down: { kind: 'matrix', field: 'w2', dims: [['dim'], ['hiddenDim']] },
});

/** The tensors outside the blocks (`layers` is filled from LAYER_ROLES). */
export const MODEL_ROLES = roleTable<Omit<ModelWeights, 'layers'>, ModelRole>()({
  tok_embd: { kind: 'matrix', field: 'tokEmbd', dims: [['vocabSize'], ['dim']] },
  output_norm: { kind: 'norm', field: 'outputNorm', dims: [['dim']] },
  output: { kind: 'matrix', field: 'output', dims: [['vocabSize'], ['dim']] },
});

const LAYER_ROLE_NAMES = Object.keys(LAYER_ROLES) as LayerRole[];

/** One tensor of a model: its role, its block (null outside the blocks) and canonical name. */
export interface CanonicalTensor {
  role: Role;
  layer: number | null;
  name: string; // 'tok_embd', 'blk.3.attn_q', ...
  spec: RoleSpec<LayerWeights> | RoleSpec<Omit<ModelWeights, 'layers'>>;
  shape: number[]; // (n) or (rows, cols) from the config
}

/** Every tensor of a model with `config`, in storage order (no `output` when tied). */
export function canonicalTensors(config: LlamaConfig): CanonicalTensor[] {
  const t = (role: Role, layer: number | null): CanonicalTensor => {
    const spec = layer === null ? MODEL_ROLES[role as ModelRole] : LAYER_ROLES[role as LayerRole];
    return { role, layer, name: layer === null ? role : `blk.${layer}.${role}`, spec, shape: roleShape(spec.dims, config) };
  };
  const out = [t('tok_embd', null)];
  for (let i = 0; i < config.nLayers; i++) out.push(...LAYER_ROLE_NAMES.map((r) => t(r, i)));
  out.push(t('output_norm', null));
  if (!config.tiedEmbeddings) out.push(t('output', null));
  return out;
}

/** The values of tensor `t` in `w`. */
export function tensorOf(w: ModelWeights, t: CanonicalTensor): Matrix | Float32Array {
  if (t.layer === null) return w[MODEL_ROLES[t.role as ModelRole].field];
  return w.layers[t.layer][LAYER_ROLES[t.role as LayerRole].field];
}

/** Heads of RoPE-rotated rows in tensor `t` (0: not rotated). */
export function ropeHeads(t: CanonicalTensor, config: LlamaConfig): number {
  return t.spec.kind === 'matrix' && t.spec.ropeHeads ? config[t.spec.ropeHeads] : 0;
}

function roleShape(dims: readonly DimExpr[], config: LlamaConfig): number[] {
  return dims.map((d) => d.reduce((a, f) => a * config[f], 1));
}

/** A shape in a format's field names, e.g. "(num_key_value_heads*head_dim, hidden_size)". */
export function explainShape(t: CanonicalTensor, names: ConfigFieldNames = {}): string {
  return `(${t.spec.dims.map((d) => d.map((f) => names[f] ?? f).join('*')).join(', ')})`;
}

export const shapeStr = (s: readonly number[]): string => `[${s.join(', ')}]`;
