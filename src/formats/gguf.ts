// GGUF Llama models (llama.cpp, Ollama, LM Studio, node-llama-cpp): the `llama.*` metadata keys
// onto LlamaConfig, GGUF tensor names (the canonical role names plus ".weight") onto the weights,
// and the writer of such files. GGUF stores q/k rows in the interleaved (Meta) RoPE order that
// llama.cpp's converter produces, which is the canonical order here: nothing is permuted. dims
// are ne0-first, so a (rows, cols) matrix is stored as [cols, rows]. Quantized tensors stay as
// their ggml blocks in memory (views on the file where it is read whole); F16 becomes the load
// dtype. The tokenizer comes from the same file (tokenizer/gguf.ts).
import { llamaConfig, type ConfigFieldNames, type LlamaConfig } from '../core/config.js';
import { check, LlamaAdapterError } from '../core/errors.js';
import {
  GGML_TYPES,
  ggmlTypeName,
  GgufType,
  readGguf,
  writeGguf,
  type GgufFile,
  type GgufTensorInfo,
  type GgufWriteTensor,
  type GgufWriteValue,
} from '../core/gguf.js';
import { isQuantDtype, matrixToF32, QUANT_DTYPES, QUANT_TYPES, quantizeRow, quantRowBytes } from '../core/quant.js';
import { asBytes } from '../core/fileio.js';
import { toBf16, toF16, type Matrix, type ModelWeights, type QuantDtype } from '../core/weights.js';
import { hasGgufTokenizer } from '../tokenizer/gguf.js';
import { HfBpeTokenizer } from '../tokenizer/hf-json.js';
import { PieceType, SentencePieceBpe } from '../tokenizer/sentencepiece-bpe.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { assembleWeights, type TensorValues } from './assemble.js';
import { resolveDtype, type ModelFile, type ReadModelOptions } from './model-file.js';
import { canonicalTensors, tensorOf } from './roles.js';

const ARCHS = ['llama'];

/** The GGUF tensor name of a canonical tensor (roles.ts uses GGUF's names, but for the embedding). */
const ggufName = (canonical: string): string => `${canonical === 'tok_embd' ? 'token_embd' : canonical}.weight`;

/** ggml type id -> in-memory dtype of the types read. */
const READ_TYPES: Readonly<Record<number, 'F32' | 'F16' | 'BF16' | QuantDtype>> = {
  0: 'F32',
  1: 'F16',
  30: 'BF16',
  ...Object.fromEntries(QUANT_DTYPES.map((d) => [QUANT_TYPES[d].ggml, d])),
};

/** Key names for the LlamaConfig fields (in messages). */
const NAMES: ConfigFieldNames = {
  dim: 'llama.embedding_length',
  nLayers: 'llama.block_count',
  nHeads: 'llama.attention.head_count',
  nKvHeads: 'llama.attention.head_count_kv',
  headDim: 'llama.attention.key_length',
  hiddenDim: 'llama.feed_forward_length',
  vocabSize: 'llama.vocab_size',
  maxSeqLen: 'llama.context_length',
};

/** The LlamaConfig a GGUF file's metadata describes (vocab from the embedding when not given). */
function ggufConfig(f: GgufFile): LlamaConfig {
  const p = f.path;
  const get = (k: string): unknown => f.metadata.get(k)?.value;
  const arch = get('general.architecture');
  if (typeof arch !== 'string') throw new LlamaAdapterError(`${p}: general.architecture is missing`);
  check(ARCHS.includes(arch), `${p}: GGUF architecture "${arch}" is not supported (supported: ${ARCHS.join(', ')})`);
  const int = (key: string, required: boolean): number | undefined => {
    const v = get(`${arch}.${key}`);
    if (v === undefined) {
      check(!required, `${p}: metadata ${arch}.${key} is missing`);
      return undefined;
    }
    check(typeof v === 'number' && Number.isSafeInteger(v) && v > 0, () => `${p}: ${arch}.${key} is ${JSON.stringify(v)}, expected a positive integer`);
    return v as number;
  };
  const num = (key: string): number | undefined => {
    const v = get(`${arch}.${key}`);
    if (v === undefined) return undefined;
    check(typeof v === 'number' && Number.isFinite(v) && v > 0, () => `${p}: ${arch}.${key} is ${JSON.stringify(v)}, expected a positive number`);
    return v as number;
  };
  const dim = int('embedding_length', true) as number;
  const nHeads = int('attention.head_count', true) as number;
  const headDim = int('attention.key_length', false);
  const valueLength = int('attention.value_length', false);
  check(
    valueLength === undefined || valueLength === (headDim ?? dim / nHeads),
    `${p}: ${arch}.attention.value_length ${valueLength} differs from the key length (not supported)`,
  );
  const embd = f.tensors.find((t) => t.name === 'token_embd.weight');
  const tokens = f.metadata.get('tokenizer.ggml.tokens')?.value;
  const nTokens = typeof tokens === 'object' ? tokens.values.length : undefined;
  const vocabSize = int('vocab_size', false) ?? (embd?.dims.length === 2 ? embd.dims[1] : nTokens);
  check(vocabSize !== undefined, `${p}: the vocabulary size is unknown (no ${arch}.vocab_size, token_embd.weight or tokenizer.ggml.tokens)`);
  const scaling = get(`${arch}.rope.scaling.type`);
  if (scaling !== undefined && scaling !== 'none') {
    const factor = num('rope.scaling.factor');
    check(factor === undefined || factor === 1, `${p}: RoPE scaling "${String(scaling)}" (factor ${factor}) is not supported`);
  }
  check(num('rope.scale_linear') === undefined || num('rope.scale_linear') === 1, `${p}: linear RoPE scaling (${arch}.rope.scale_linear) is not supported`);
  check(
    !f.tensors.some((t) => t.name === 'rope_freqs.weight'),
    `${p}: per-frequency RoPE factors (rope_freqs.weight, Llama 3.1-style scaling) are not supported in GGUF files yet; use the Hugging Face directory`,
  );
  const id = (k: string): number | undefined => {
    const v = get(k);
    return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < (vocabSize as number) ? v : undefined;
  };
  const config = llamaConfig(
    {
      dim,
      nLayers: int('block_count', true) as number,
      nHeads,
      nKvHeads: int('attention.head_count_kv', false),
      headDim,
      hiddenDim: int('feed_forward_length', true) as number,
      vocabSize,
      maxSeqLen: int('context_length', true) as number,
      normEps: num('attention.layer_norm_rms_epsilon') ?? 1e-5,
      ropeTheta: num('rope.freq_base') ?? 10000,
      tiedEmbeddings: !f.tensors.some((t) => t.name === 'output.weight'),
      bosId: id('tokenizer.ggml.bos_token_id'),
      eosId: id('tokenizer.ggml.eos_token_id'),
    },
    { where: p, names: NAMES },
  );
  const rd = int('rope.dimension_count', false);
  check(
    rd === undefined || rd === config.headDim,
    `${p}: ${arch}.rope.dimension_count ${rd} differs from the head size ${config.headDim} (partial RoPE is not supported)`,
  );
  return config;
}

/** Read a GGUF Llama model. */
export function readGgufModel(path: string, options: ReadModelOptions = {}): ModelFile {
  const dtype = resolveDtype(options.dtype);
  const f = readGguf(path, { lazy: options.lazy });
  const config = ggufConfig(f);
  const byName = new Map(f.tensors.map((t) => [t.name, t]));
  const dtypes: string[] = [];
  const { weights, fingerprint } = assembleWeights(
    config,
    dtype,
    (req) => {
      const name = ggufName(req.name);
      const t = byName.get(name);
      if (!t) throw new LlamaAdapterError(`${path}: missing tensor "${name}"`);
      const kind = READ_TYPES[t.type];
      if (!kind) {
        const ok = ['F32', 'F16', 'BF16', ...QUANT_DTYPES.map((d) => QUANT_TYPES[d].name)].join(', ');
        throw new LlamaAdapterError(`${path}: tensor "${name}" has type ${ggmlTypeName(t.type)}, which is not supported (supported: ${ok})`);
      }
      const tn = ggmlTypeName(t.type);
      if (!dtypes.includes(tn)) dtypes.push(tn);
      return { file: path, name, shape: [...t.dims].reverse(), read: () => tensorValues(f, t, kind) };
    },
    { checkFinite: options.checkTensors, names: NAMES },
  );
  return {
    path,
    format: 'gguf',
    config,
    weights,
    sourceDtypes: dtypes,
    tokenizerPath: hasGgufTokenizer(f) ? path : null,
    fingerprint,
  };
}

function tensorValues(f: GgufFile, t: GgufTensorInfo, kind: 'F32' | 'F16' | 'BF16' | QuantDtype): TensorValues {
  const n = t.bytes / GGML_TYPES[t.type].bytes; // values of an unblocked type
  if (kind === 'F32') return { dtype: 'f32', data: f.source.f32(t.offset, n) };
  if (kind === 'BF16') return { dtype: 'bf16', data: f.source.u16(t.offset, n) };
  if (kind === 'F16') return { dtype: 'f16', data: f.source.u16(t.offset, n) };
  return { dtype: kind, data: f.source.bytes(t.offset, t.bytes) };
}

// ---------------------------------------------------------------- writing

/** Types the writer produces (`convert --to gguf --type`). */
export const GGUF_WRITE_TYPES = ['f32', 'f16', 'bf16', 'q8_0', 'q4_0', 'q4_1', 'q5_0', 'q4_k', 'q6_k'] as const;
export type GgufWriteType = (typeof GGUF_WRITE_TYPES)[number];

/** general.file_type of a file mostly of `type` (llama_ftype). */
const FILE_TYPE: Record<GgufWriteType, number> = { f32: 0, f16: 1, bf16: 32, q4_0: 2, q4_1: 3, q8_0: 7, q5_0: 8, q4_k: 15, q6_k: 18 };

/**
 * The type a matrix of `cols` columns gets for a requested type: llama-quantize's fallbacks when
 * the columns are not a multiple of the block size (Q4_K -> Q5_0, Q6_K -> Q8_0, then F16).
 */
function typeFor(want: GgufWriteType, cols: number): GgufWriteType {
  if (!isQuantDtype(want)) return want;
  if (cols % QUANT_TYPES[want].block === 0) return want;
  const fallback: GgufWriteType = want === 'q4_k' ? 'q5_0' : want === 'q6_k' ? 'q8_0' : 'f16';
  return typeFor(fallback, cols);
}

const GGML_ID: Record<GgufWriteType, number> = { f32: 0, f16: 1, bf16: 30, q8_0: 8, q4_0: 2, q4_1: 3, q5_0: 6, q4_k: 12, q6_k: 14 };

function matrixBytes(m: Matrix, type: GgufWriteType): Uint8Array {
  if (type === m.dtype) return m.data instanceof Uint8Array ? m.data : asBytes(m.data);
  const f = matrixToF32(m);
  if (type === 'f32') return asBytes(f);
  if (type === 'f16') return asBytes(toF16(f));
  if (type === 'bf16') return asBytes(toBf16(f));
  const rb = quantRowBytes(type, m.cols);
  const out = new Uint8Array(m.rows * rb);
  for (let r = 0; r < m.rows; r++) quantizeRow(type, f, r * m.cols, m.cols, out, r * rb);
  return out;
}

/** tokenizer.ggml.* metadata of a tokenizer (SentencePiece-style -> "llama", byte-level BPE -> "gpt2"). */
function tokenizerMetadata(tok: Tokenizer): [string, GgufWriteValue][] {
  const strings = (v: readonly string[]): GgufWriteValue => ({ type: GgufType.ARRAY, elementType: GgufType.STRING, value: v });
  const out: [string, GgufWriteValue][] = [];
  if (tok instanceof SentencePieceBpe) {
    const { pieces, scores, types } = tok.vocab;
    // llama2.c .bin pieces use ' ' for a space; GGUF "llama" vocabularies use '▁' as tokenizer.model does
    const sp = tok.kind === 'llama2c-bin';
    out.push(['tokenizer.ggml.model', { type: GgufType.STRING, value: 'llama' }]);
    out.push(['tokenizer.ggml.tokens', strings(sp ? pieces.map((p) => p.replaceAll(' ', '\u2581')) : pieces)]);
    out.push(['tokenizer.ggml.scores', { type: GgufType.ARRAY, elementType: GgufType.FLOAT32, value: scores }]);
    out.push(['tokenizer.ggml.token_type', { type: GgufType.ARRAY, elementType: GgufType.INT32, value: types }]);
  } else if (tok instanceof HfBpeTokenizer) {
    const v = tok.exportVocab();
    if (v.byteLevel) {
      out.push(['tokenizer.ggml.model', { type: GgufType.STRING, value: 'gpt2' }]);
      out.push(['tokenizer.ggml.pre', { type: GgufType.STRING, value: 'llama-bpe' }]);
      out.push(['tokenizer.ggml.tokens', strings(v.pieces)]);
      out.push(['tokenizer.ggml.token_type', { type: GgufType.ARRAY, elementType: GgufType.INT32, value: v.types }]);
      out.push(['tokenizer.ggml.merges', strings(v.merges.map(([l, r]) => `${l} ${r}`))]);
    } else {
      // SentencePiece-style BPE: a piece's score is minus the rank of the merge that makes it,
      // so merging by highest score applies the merges in rank order
      const scores = new Float32Array(v.pieces.length).fill(-1e9);
      v.merges.forEach(([l, r], rank) => {
        const id = v.ids.get(l + r);
        if (id !== undefined && scores[id] === -1e9) scores[id] = -rank;
      });
      out.push(['tokenizer.ggml.model', { type: GgufType.STRING, value: 'llama' }]);
      out.push(['tokenizer.ggml.tokens', strings(v.pieces)]);
      out.push(['tokenizer.ggml.scores', { type: GgufType.ARRAY, elementType: GgufType.FLOAT32, value: scores }]);
      out.push(['tokenizer.ggml.token_type', { type: GgufType.ARRAY, elementType: GgufType.INT32, value: v.types }]);
      out.push(['tokenizer.ggml.add_space_prefix', { type: GgufType.BOOL, value: v.dummyPrefix }]);
    }
  } else {
    throw new LlamaAdapterError(`${tok.path}: a ${tok.kind} tokenizer cannot be written into GGUF`);
  }
  const u32 = (value: number): GgufWriteValue => ({ type: GgufType.UINT32, value });
  out.push(['tokenizer.ggml.bos_token_id', u32(tok.bosId)], ['tokenizer.ggml.eos_token_id', u32(tok.eosId)]);
  const unk = tok instanceof SentencePieceBpe ? tok.vocab.types.indexOf(PieceType.UNKNOWN) : -1;
  if (unk >= 0) out.push(['tokenizer.ggml.unknown_token_id', u32(unk)]);
  out.push(['tokenizer.ggml.add_bos_token', { type: GgufType.BOOL, value: true }], ['tokenizer.ggml.add_eos_token', { type: GgufType.BOOL, value: false }]);
  return out;
}

/**
 * Write a Llama model as a GGUF v3 file llama.cpp loads: `type` for the matrices (with
 * llama-quantize's fallbacks for columns that do not fit its blocks), norms F32, the tokenizer in
 * tokenizer.ggml.*. Tensors in llama.cpp's order, contiguous at 32-byte alignment.
 */
export function writeGgufModel(
  path: string,
  config: LlamaConfig,
  weights: ModelWeights,
  tokenizer: Tokenizer,
  type: GgufWriteType,
  name = 'llama-adapter export',
): void {
  check(tokenizer.vocabSize === config.vocabSize, `${tokenizer.path}: tokenizer has ${tokenizer.vocabSize} tokens, the model ${config.vocabSize}`);
  const u32 = (value: number): GgufWriteValue => ({ type: GgufType.UINT32, value });
  const f32 = (value: number): GgufWriteValue => ({ type: GgufType.FLOAT32, value });
  const c = config;
  const tied = weights.output === weights.tokEmbd;
  const tensors: GgufWriteTensor[] = [];
  let quantized = false;
  for (const t of canonicalTensors({ ...c, tiedEmbeddings: tied })) {
    const v = tensorOf(weights, t);
    const tname = ggufName(t.name);
    if (v instanceof Float32Array) {
      tensors.push({ name: tname, dims: [v.length], type: 0, data: asBytes(v) });
      continue;
    }
    const ty = typeFor(type, v.cols);
    quantized ||= isQuantDtype(ty);
    tensors.push({ name: tname, dims: [v.cols, v.rows], type: GGML_ID[ty], data: matrixBytes(v, ty) });
  }
  const meta: [string, GgufWriteValue][] = [
    ['general.architecture', { type: GgufType.STRING, value: 'llama' }],
    ['general.name', { type: GgufType.STRING, value: name }],
    ['general.file_type', u32(FILE_TYPE[type])],
    ['llama.context_length', u32(c.maxSeqLen)],
    ['llama.embedding_length', u32(c.dim)],
    ['llama.block_count', u32(c.nLayers)],
    ['llama.feed_forward_length', u32(c.hiddenDim)],
    ['llama.rope.dimension_count', u32(c.headDim)],
    ['llama.attention.head_count', u32(c.nHeads)],
    ['llama.attention.head_count_kv', u32(c.nKvHeads)],
    ['llama.attention.layer_norm_rms_epsilon', f32(c.normEps)],
    ['llama.rope.freq_base', f32(c.ropeTheta)],
    ['llama.vocab_size', u32(c.vocabSize)],
  ];
  if (c.headDim * c.nHeads !== c.dim) meta.push(['llama.attention.key_length', u32(c.headDim)], ['llama.attention.value_length', u32(c.headDim)]);
  check(c.ropeScaling === null, 'GGUF writer: Llama 3.1 RoPE scaling is not supported yet (llama.cpp stores it as rope_freqs.weight)');
  if (quantized) meta.push(['general.quantization_version', u32(2)]);
  meta.push(...tokenizerMetadata(tokenizer));
  writeGguf(path, meta, tensors);
}
