// llama2.c checkpoints: the legacy fp32 `.bin` (7 x int32 header, weights, RoPE tables), the
// version-1 fp32 export and the version-2 int8 export (magic "ak42", 256-byte header, Q8_0
// groups), dequantised to f32 at load. The file size must be exactly what the header implies.
import { llamaConfig, type ConfigFieldNames, type LlamaConfig } from '../core/config.js';
import { LlamaAdapterError, check } from '../core/errors.js';
import { assembleWeights } from './assemble.js';
import { resolveDtype, type ModelFile, type ReadModelOptions } from './model-file.js';
import { canonicalTensors, type CanonicalTensor, type Role } from './roles.js';
import { dirname } from 'node:path';
import { ByteSource } from '../core/fileio.js';
import { firstFileIn } from '../core/fs.js';

export const LLAMA2C_MAGIC = 0x616b3432; // "ak42" as a little-endian uint32

interface Llama2cHeader {
  version: 0 | 1 | 2; // 0 = legacy fp32 (no magic), 1 = fp32 export, 2 = int8 Q8_0 export
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  vocabSize: number;
  seqLen: number;
  sharedClassifier: boolean;
  groupSize: number; // Q8_0 group size (version 2), else 0
  headerBytes: number; // 28 for legacy, 256 for versions 1 and 2
  config: LlamaConfig; // the architecture the header describes
}

type RawHeader = Omit<Llama2cHeader, 'config'>;

/** The header's names for the LlamaConfig fields (in messages). */
const LLAMA2C_NAMES: ConfigFieldNames = {
  dim: 'dim',
  hiddenDim: 'hidden_dim',
  nLayers: 'n_layers',
  nHeads: 'n_heads',
  nKvHeads: 'n_kv_heads',
  vocabSize: 'vocab_size',
  maxSeqLen: 'seq_len',
};

/** llama2.c's array names for the canonical roles (roles.ts), and its RoPE tables. */
const ARRAYS = {
  token_embedding: 'tok_embd',
  rms_att: 'attn_norm',
  wq: 'attn_q',
  wk: 'attn_k',
  wv: 'attn_v',
  wo: 'attn_output',
  rms_ffn: 'ffn_norm',
  w1: 'ffn_gate',
  w2: 'ffn_down',
  w3: 'ffn_up',
  rms_final: 'output_norm',
  wcls: 'output',
  freq_cis_real: null,
  freq_cis_imag: null,
} as const satisfies Record<string, Role | null>;

type ArrayName = keyof typeof ARRAYS;

/** Storage order: the legacy file, and the version 1/2 exports (wcls follows when not shared). */
const LEGACY_ORDER: readonly ArrayName[] = [
  'token_embedding',
  'rms_att',
  'wq',
  'wk',
  'wv',
  'wo',
  'rms_ffn',
  'w1',
  'w2',
  'w3',
  'rms_final',
  'freq_cis_real',
  'freq_cis_imag',
];
const EXPORT_ORDER: readonly ArrayName[] = ['rms_att', 'rms_ffn', 'rms_final', 'token_embedding', 'wq', 'wk', 'wv', 'wo', 'w1', 'w2', 'w3'];

/** One stored array: `count` stacked (rows, cols) matrices, fp32 or Q8_0 (int8 + fp32 scales). */
interface Segment {
  name: ArrayName;
  role: Role | null; // null: the legacy RoPE tables (skipped)
  shape: number[]; // of one stored tensor, canonical
  count: number;
  rows: number;
  cols: number;
  q80: boolean;
  offset: number;
}

/** Parse and validate the header and lay out the arrays it implies. */
function readHeader(src: ByteSource): { header: Llama2cHeader; segments: Segment[]; total: number } {
  const p = src.path;
  check(src.size >= 28, `${p}: file is ${src.size} bytes, too short for a llama2.c header (28 bytes)`);
  const head = src.bytes(0, Math.min(src.size, 256));
  const dv = new DataView(head.buffer, head.byteOffset, head.byteLength);
  let h: RawHeader;
  if (dv.getUint32(0, true) === LLAMA2C_MAGIC) {
    const version = dv.getInt32(4, true);
    check(version === 1 || version === 2, `${p}: llama2.c export version ${version} is not supported (supported: 1 = fp32, 2 = int8 Q8_0)`);
    check(src.size >= 256, `${p}: file is ${src.size} bytes, too short for a llama2.c version-${version} header (256 bytes)`);
    const ints = Array.from({ length: 7 }, (_, i) => dv.getInt32(8 + 4 * i, true));
    const shared = dv.getUint8(36);
    check(shared === 0 || shared === 1, `${p}: shared_classifier flag is ${shared}, expected 0 or 1`);
    h = {
      version,
      dim: ints[0],
      hiddenDim: ints[1],
      nLayers: ints[2],
      nHeads: ints[3],
      nKvHeads: ints[4],
      vocabSize: ints[5],
      seqLen: ints[6],
      sharedClassifier: shared === 1,
      groupSize: version === 2 ? dv.getInt32(37, true) : 0,
      headerBytes: 256,
    };
  } else {
    const ints = Array.from({ length: 7 }, (_, i) => dv.getInt32(4 * i, true));
    h = {
      version: 0,
      dim: ints[0],
      hiddenDim: ints[1],
      nLayers: ints[2],
      nHeads: ints[3],
      nKvHeads: ints[4],
      vocabSize: Math.abs(ints[5]), // negative = unshared classifier
      seqLen: ints[6],
      sharedClassifier: ints[5] > 0,
      groupSize: 0,
      headerBytes: 28,
    };
  }

  const config = llama2cConfig(h, `${p}: not a valid llama2.c checkpoint`);
  const bad = (why: string): never => {
    throw new LlamaAdapterError(`${p}: not a valid llama2.c checkpoint: ${why} (header: ${describe(h)})`);
  };
  if (h.version === 2 && !(h.groupSize > 0)) bad(`group_size is ${h.groupSize}`);
  const header = { ...h, config };
  return { header, ...layout(header, bad) };
}

function describe(h: RawHeader): string {
  return (
    `dim ${h.dim}, hidden_dim ${h.hiddenDim}, n_layers ${h.nLayers}, n_heads ${h.nHeads}, n_kv_heads ${h.nKvHeads}, ` +
    `vocab_size ${h.vocabSize}, seq_len ${h.seqLen}, ${h.sharedClassifier ? 'shared' : 'separate'} classifier` +
    (h.version === 2 ? `, group_size ${h.groupSize}` : '')
  );
}

/** The arrays of the file in order, with their offsets, and the total size they imply. */
function layout(h: Llama2cHeader, bad: (why: string) => never): { segments: Segment[]; total: number } {
  const c = h.config;
  const shapes = new Map(
    canonicalTensors({ ...c, tiedEmbeddings: false })
      .filter((t) => (t.layer ?? 0) === 0)
      .map((t) => [t.role, t]),
  );
  const order = h.version === 0 ? LEGACY_ORDER : EXPORT_ORDER;
  const segments: Segment[] = [];
  let off = h.headerBytes;
  for (const name of h.sharedClassifier ? order : [...order, 'wcls' as const]) {
    const role = ARRAYS[name];
    const t = role === null ? null : (shapes.get(role) as CanonicalTensor);
    const shape = t === null ? [c.maxSeqLen, c.headDim / 2] : t.shape; // RoPE tables: (seq_len, head_dim/2)
    const q80 = h.version === 2 && t?.spec.kind === 'matrix';
    const n = shape[0] * (shape[1] ?? 1);
    // every quantised matrix is split into whole groups (export.py asserts the same)
    if (q80 && n % h.groupSize !== 0) bad(`${name} (${n} values) is not a whole number of ${h.groupSize}-value groups`);
    const seg = {
      name,
      role,
      shape,
      count: t?.layer === 0 ? c.nLayers : 1,
      rows: shape.length === 1 ? 1 : shape[0],
      cols: shape[shape.length - 1],
      q80,
      offset: off,
    };
    segments.push(seg);
    off += seg.count * segmentBytes(seg, h.groupSize);
  }
  return { segments, total: off };
}

/** Bytes of one matrix of a segment. */
function segmentBytes(seg: Segment, gs: number): number {
  const n = seg.rows * seg.cols;
  return seg.q80 ? n + 4 * (n / gs) : 4 * n;
}

function checkSize(src: ByteSource, h: Llama2cHeader, expected: number): void {
  if (src.size === expected) return;
  const what = src.size < expected ? 'truncated' : `${src.size - expected} bytes of trailing data`;
  throw new LlamaAdapterError(
    `${src.path}: file is ${src.size} bytes but its llama2.c ${h.version === 0 ? 'legacy fp32' : `version-${h.version}`} header ` +
      `(${describe(h)}) implies ${expected} bytes (${what})`,
  );
}

/** The header's architecture (llama2.c models: norm eps 1e-5, RoPE theta 10000, bos 1, eos 2). */
function llama2cConfig(h: RawHeader, where: string): LlamaConfig {
  return llamaConfig(
    {
      dim: h.dim,
      nLayers: h.nLayers,
      nHeads: h.nHeads,
      nKvHeads: h.nKvHeads,
      hiddenDim: h.hiddenDim,
      vocabSize: h.vocabSize,
      maxSeqLen: h.seqLen,
      tiedEmbeddings: h.sharedClassifier,
    },
    { where, names: LLAMA2C_NAMES, context: `header: ${describe(h)}` },
  );
}

/** Read a llama2.c model file (legacy fp32, version 1 fp32 or version 2 Q8_0). */
export function readLlama2c(path: string, options: ReadModelOptions = {}): ModelFile {
  const dtype = resolveDtype(options.dtype);
  const src = new ByteSource(path, { lazy: options.lazy });
  const { header: h, segments, total } = readHeader(src);
  checkSize(src, h, total);
  const byRole = new Map(segments.map((s) => [s.role, s]));

  /** Matrix `i` of a segment as float32 (a view on the file where possible; dequantised for Q8_0). */
  const f32 = (s: Segment, i: number): Float32Array => {
    const n = s.rows * s.cols;
    const off = s.offset + i * segmentBytes(s, h.groupSize);
    if (!s.q80) return src.f32(off, n);
    return dequantizeQ80(src.bytes(off, n), src.f32(off + n, n / h.groupSize), h.groupSize);
  };

  const { weights, fingerprint } = assembleWeights(
    h.config,
    dtype,
    (req) => {
      const s = byRole.get(req.role) as Segment;
      const i = req.layer ?? 0;
      return {
        file: path,
        name: s.count > 1 ? `${s.name}[${i}]` : s.name,
        shape: s.shape,
        read: () => ({ dtype: 'f32', data: f32(s, i) }),
      };
    },
    { checkFinite: options.checkTensors },
  );
  const q80 = h.version === 2;
  return {
    path,
    format: q80 ? 'llama2c-q80' : 'llama2c-fp32',
    config: h.config,
    weights,
    sourceDtypes: q80 ? ['Q8_0', 'F32'] : ['F32'],
    tokenizerPath: firstFileIn(dirname(path), ['tokenizer.bin', `tok${h.config.vocabSize}.bin`, 'tokenizer.model', 'tokenizer.json']),
    fingerprint,
  };
}

/** Q8_0: value = int8 * scale of its group of `gs` consecutive values. */
function dequantizeQ80(q: Uint8Array, scales: Float32Array, gs: number): Float32Array {
  const qi = new Int8Array(q.buffer, q.byteOffset, q.length);
  const out = new Float32Array(q.length);
  for (let g = 0; g < scales.length; g++) {
    const sc = scales[g];
    const base = g * gs;
    for (let k = 0; k < gs; k++) out[base + k] = qi[base + k] * sc;
  }
  return out;
}
