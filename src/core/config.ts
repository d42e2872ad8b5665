// The architecture of a LLaMA-family model, independent of the file format it came from.
// Every loader (HF directory, llama2.c .bin, synthetic, later GGUF) builds one with
// llamaConfig(), which fills the LLaMA defaults and checks that the shape is consistent.
import { LlamaAdapterError } from './errors.js';

/** Llama 3.1-style RoPE frequency scaling (`rope_scaling.rope_type == "llama3"` in HF configs). */
export interface Llama3RopeScaling {
  factor: number; // how much longer the target context is than the original
  lowFreqFactor: number; // wavelengths above originalMaxPos/lowFreqFactor are divided by `factor`
  highFreqFactor: number; // wavelengths below originalMaxPos/highFreqFactor are kept
  originalMaxPos: number; // original_max_position_embeddings
}

export interface LlamaConfig {
  dim: number; // model width (hidden_size)
  nLayers: number; // transformer blocks
  nHeads: number; // query heads
  nKvHeads: number; // key/value heads (GQA: query head h reads kv head floor(h / (nHeads/nKvHeads)))
  headDim: number; // dim / nHeads
  hiddenDim: number; // SwiGLU width (intermediate_size)
  vocabSize: number; // rows of the embedding and the output head
  maxSeqLen: number; // context length the model was trained for
  normEps: number; // RMSNorm epsilon
  ropeTheta: number; // RoPE base
  ropeScaling: Llama3RopeScaling | null; // null = plain RoPE
  tiedEmbeddings: boolean; // output head shares the embedding matrix
  bosId: number; // beginning-of-sequence token id
  eosId: number; // end-of-sequence token id
}

/**
 * The largest sizes a file may declare (documented in the README). A header field is only a
 * number: without a ceiling, a corrupt seq_len of 657,929,687 makes the RoPE tables hang the
 * loader and a huge vocab id allocates gigabytes. Each is well above every LLaMA-family model
 * (Llama 3.1 405B: dim 16384, 126 layers, 128 heads, hidden 53248, vocab 128256, 131072 positions).
 */
export const CONFIG_LIMITS = {
  dim: 1 << 16,
  hiddenDim: 1 << 18,
  nLayers: 1024,
  nHeads: 1024,
  nKvHeads: 1024,
  vocabSize: 1 << 22,
  maxSeqLen: 1 << 20,
} as const;

/** What a format must give; every other field has a LLaMA default (see llamaConfig). */
export type LlamaConfigFields = Pick<LlamaConfig, 'dim' | 'nLayers' | 'nHeads' | 'hiddenDim' | 'vocabSize' | 'maxSeqLen'> & Partial<LlamaConfig>;

/** A format's own names for config fields, for its messages (HF: dim -> "hidden_size"). */
export type ConfigFieldNames = Partial<Record<keyof LlamaConfig, string>>;

/** Where a config comes from, for error messages: `${where}: ${problem}` [+ ` (${context})`]. */
export interface ConfigSource {
  where: string;
  names?: ConfigFieldNames;
  context?: string;
}

/**
 * A LlamaConfig from `fields`, with the defaults nKvHeads = nHeads, headDim = dim / nHeads,
 * normEps 1e-5, ropeTheta 10000, no RoPE scaling, separate output head, bos 1, eos 2. Throws a
 * LlamaAdapterError (in the source's field names) unless the sizes are positive integers,
 * nHeads is a multiple of nKvHeads and the head size is even (RoPE rotates pairs).
 */
export function llamaConfig(fields: LlamaConfigFields, source: ConfigSource): LlamaConfig {
  const f = fields;
  const c: LlamaConfig = {
    dim: f.dim,
    nLayers: f.nLayers,
    nHeads: f.nHeads,
    nKvHeads: f.nKvHeads ?? f.nHeads,
    headDim: f.headDim ?? f.dim / f.nHeads,
    hiddenDim: f.hiddenDim,
    vocabSize: f.vocabSize,
    maxSeqLen: f.maxSeqLen,
    normEps: f.normEps ?? 1e-5,
    ropeTheta: f.ropeTheta ?? 10000,
    ropeScaling: f.ropeScaling ?? null,
    tiedEmbeddings: f.tiedEmbeddings ?? false,
    bosId: f.bosId ?? 1,
    eosId: f.eosId ?? 2,
  };
  const name = (k: keyof LlamaConfig): string => source.names?.[k] ?? k;
  const fail = (why: string): never => {
    throw new LlamaAdapterError(`${source.where}: ${why}${source.context ? ` (${source.context})` : ''}`);
  };
  for (const k of ['dim', 'hiddenDim', 'nLayers', 'nHeads', 'nKvHeads', 'vocabSize', 'maxSeqLen'] as const) {
    if (!(Number.isSafeInteger(c[k]) && c[k] > 0)) fail(`${name(k)} is ${c[k]}, expected a positive integer`);
    if (c[k] > CONFIG_LIMITS[k]) fail(`${name(k)} is ${c[k]}, above the supported maximum ${CONFIG_LIMITS[k]}`);
  }
  if (f.headDim === undefined && c.dim % c.nHeads !== 0) {
    const given = source.names?.headDim ? ` (and no ${source.names.headDim} is given)` : '';
    fail(`${name('dim')} ${c.dim} is not divisible by ${name('nHeads')} ${c.nHeads}${given}`);
  }
  if (!(Number.isSafeInteger(c.headDim) && c.headDim > 0 && c.headDim <= CONFIG_LIMITS.dim)) {
    fail(`${name('headDim')} is ${c.headDim}, expected a positive integer up to ${CONFIG_LIMITS.dim}`);
  }
  if (c.nHeads % c.nKvHeads !== 0) fail(`${name('nHeads')} ${c.nHeads} is not a multiple of ${name('nKvHeads')} ${c.nKvHeads}`);
  if (c.headDim % 2 !== 0) fail(`head size ${c.headDim} is odd; RoPE needs an even head size`);
  return c;
}

/** Parameter count of the frozen base model (tied head counted once). */
export function parameterCount(c: LlamaConfig): number {
  const kv = c.nKvHeads * c.headDim;
  const perLayer = 2 * c.dim + c.dim * c.dim * 2 + 2 * c.dim * kv + 3 * c.dim * c.hiddenDim;
  return c.vocabSize * c.dim * (c.tiedEmbeddings ? 1 : 2) + c.dim + c.nLayers * perLayer;
}
