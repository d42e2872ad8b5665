// llama2.c checkpoints: the legacy fp32 `.bin` (7 x int32 header, weights, RoPE tables), the
// version-1 fp32 export and the version-2 int8 export (magic "ak42", 256-byte header, Q8_0
// groups), dequantised to f32 at load. The file size must be exactly what the header implies.
import { llamaConfig, type ConfigFieldNames, type LlamaConfig } from '../core/config.js';
import { LlamaAdapterError, check } from '../core/errors.js';
import type { LayerWeights, Matrix, ModelWeights } from '../core/weights.js';
import { MatrixBuilder, resolveDtype, type LoadOptions, type LoadedModel } from './build.js';
import { ByteSource } from '../core/fileio.js';

export const LLAMA2C_MAGIC = 0x616b3432; // "ak42" as a little-endian uint32

export interface Llama2cHeader {
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

/** One stored array: `count` stacked (rows, cols) matrices, fp32 or Q8_0 (int8 + fp32 scales). */
interface Segment {
  name: string;
  count: number;
  rows: number;
  cols: number;
  q80: boolean;
  offset: number; // filled in by layout()
}

/** 0 for a legacy file, 1 or 2 for the exports (from the first 8 bytes). */
export function llama2cVersionOf(first8: Uint8Array): number {
  if (first8.length < 8) return 0;
  const dv = new DataView(first8.buffer, first8.byteOffset, 8);
  return dv.getUint32(0, true) === LLAMA2C_MAGIC ? dv.getInt32(4, true) : 0;
}

function readHeader(src: ByteSource): Llama2cHeader {
  const p = src.path;
  check(src.size >= 28, `${p}: file is ${src.size} bytes, too short for a llama2.c header (28 bytes)`);
  const head = src.bytes(0, Math.min(src.size, 256));
  const dv = new DataView(head.buffer, head.byteOffset, head.byteLength);
  let h: RawHeader;
  if (dv.getUint32(0, true) === LLAMA2C_MAGIC) {
    const version = dv.getInt32(4, true);
    check(
      version === 1 || version === 2,
      `${p}: llama2.c export version ${version} is not supported (supported: 1 = fp32, 2 = int8 Q8_0)`,
    );
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
  if (h.version === 2) {
    const bad = (why: string): never => {
      throw new LlamaAdapterError(`${p}: not a valid llama2.c checkpoint: ${why} (header: ${describe(h)})`);
    };
    if (!(h.groupSize > 0)) bad(`group_size is ${h.groupSize}`);
    const kv = config.headDim * config.nKvHeads;
    // every quantised matrix is split into whole groups (export.py asserts the same)
    for (const [what, rows] of [
      ['wq/wo', h.dim],
      ['wk/wv', kv],
      ['w1/w2/w3', h.hiddenDim],
      ['token_embedding', h.vocabSize],
    ] as const) {
      if ((rows * h.dim) % h.groupSize !== 0) bad(`${what} (${rows * h.dim} values) is not a whole number of ${h.groupSize}-value groups`);
    }
  }
  return { ...h, config };
}

function describe(h: RawHeader): string {
  return (
    `dim ${h.dim}, hidden_dim ${h.hiddenDim}, n_layers ${h.nLayers}, n_heads ${h.nHeads}, n_kv_heads ${h.nKvHeads}, ` +
    `vocab_size ${h.vocabSize}, seq_len ${h.seqLen}, ${h.sharedClassifier ? 'shared' : 'separate'} classifier` +
    (h.version === 2 ? `, group_size ${h.groupSize}` : '')
  );
}

/** The arrays of the file in order, with their offsets, and the total size they imply. */
function layout(h: Llama2cHeader): { segments: Segment[]; total: number } {
  const { dim, hiddenDim: hid, nLayers: L, vocabSize: V } = h;
  const hs = dim / h.nHeads;
  const kv = h.nKvHeads * hs;
  const q = h.version === 2;
  const s = (name: string, count: number, rows: number, cols: number, q80 = false): Segment => ({
    name,
    count,
    rows,
    cols,
    q80,
    offset: 0,
  });
  const mats = [
    s('wq', L, dim, dim, q),
    s('wk', L, kv, dim, q),
    s('wv', L, kv, dim, q),
    s('wo', L, dim, dim, q),
    s('w1', L, hid, dim, q),
    s('w2', L, dim, hid, q),
    s('w3', L, hid, dim, q),
  ];
  let segs: Segment[];
  if (h.version === 0) {
    segs = [
      s('token_embedding', 1, V, dim),
      s('rms_att', L, 1, dim),
      ...mats.slice(0, 4),
      s('rms_ffn', L, 1, dim),
      ...mats.slice(4),
      s('rms_final', 1, 1, dim),
      s('freq_cis_real', 1, h.seqLen, hs / 2),
      s('freq_cis_imag', 1, h.seqLen, hs / 2),
    ];
  } else {
    segs = [s('rms_att', L, 1, dim), s('rms_ffn', L, 1, dim), s('rms_final', 1, 1, dim), s('token_embedding', 1, V, dim, q), ...mats];
  }
  if (!h.sharedClassifier) segs.push(s('wcls', 1, V, dim, q));
  let off = h.headerBytes;
  for (const seg of segs) {
    seg.offset = off;
    off += seg.count * segmentBytes(seg, h.groupSize);
  }
  return { segments: segs, total: off };
}

/** Bytes of one matrix of a segment. */
function segmentBytes(seg: Segment, gs: number): number {
  const n = seg.rows * seg.cols;
  return seg.q80 ? n + 4 * (n / gs) : 4 * n;
}

/** Parse and validate a llama2.c header (also checks the file size). */
export function readLlama2cHeader(path: string): Llama2cHeader {
  const src = new ByteSource(path, { lazy: true });
  const h = readHeader(src);
  checkSize(src, h, layout(h).total);
  return h;
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

/** Load a llama2.c checkpoint (legacy fp32, version 1 fp32 or version 2 Q8_0). */
export function loadLlama2c(path: string, options: LoadOptions = {}): LoadedModel & { header: Llama2cHeader } {
  const dtype = resolveDtype(options.dtype);
  const src = new ByteSource(path, { lazy: options.lazy });
  const h = readHeader(src);
  const { segments, total } = layout(h);
  checkSize(src, h, total);
  const seg = new Map(segments.map((s) => [s.name, s]));
  const get = (name: string): Segment => seg.get(name) as Segment;

  /** Matrix `i` of a segment as float32 (a view on the file where possible; dequantised for Q8_0). */
  const f32 = (s: Segment, i: number): Float32Array => {
    const n = s.rows * s.cols;
    const off = s.offset + i * segmentBytes(s, h.groupSize);
    if (!s.q80) return src.f32(off, n);
    return dequantizeQ80(src.bytes(off, n), src.f32(off + n, n / h.groupSize), h.groupSize);
  };

  const config = h.config;
  const b = new MatrixBuilder(dtype, h.nLayers);
  const mat = (name: string, role: string, i = 0): Matrix => {
    const s = get(name);
    return b.fromF32(role, s.rows, s.cols, f32(s, i));
  };
  const norm = (name: string, role: string, i = 0): Float32Array => b.norm(role, f32(get(name), i));

  const tokEmbd = mat('token_embedding', 'tok_embd');
  const layers: LayerWeights[] = [];
  for (let i = 0; i < h.nLayers; i++) {
    const p = `blk.${i}.`;
    layers.push({
      attnNorm: norm('rms_att', `${p}attn_norm`, i),
      wq: mat('wq', `${p}attn_q`, i),
      wk: mat('wk', `${p}attn_k`, i),
      wv: mat('wv', `${p}attn_v`, i),
      wo: mat('wo', `${p}attn_output`, i),
      ffnNorm: norm('rms_ffn', `${p}ffn_norm`, i),
      w1: mat('w1', `${p}ffn_gate`, i),
      w3: mat('w3', `${p}ffn_up`, i),
      w2: mat('w2', `${p}ffn_down`, i),
    });
  }
  const outputNorm = norm('rms_final', 'output_norm');
  const output = h.sharedClassifier ? tokEmbd : mat('wcls', 'output');
  const weights: ModelWeights = { tokEmbd, layers, outputNorm, output };
  return {
    config,
    weights,
    sourceDtypes: h.version === 2 ? ['Q8_0', 'F32'] : ['F32'],
    fingerprint: b.fp.digest(),
    header: h,
  };
}

/** Q8_0: value = int8 * scale of its group of `gs` consecutive values. */
export function dequantizeQ80(q: Uint8Array, scales: Float32Array, gs: number): Float32Array {
  const qi = new Int8Array(q.buffer, q.byteOffset, q.length);
  const out = new Float32Array(q.length);
  for (let g = 0; g < scales.length; g++) {
    const sc = scales[g];
    const base = g * gs;
    for (let k = 0; k < gs; k++) out[base + k] = qi[base + k] * sc;
  }
  return out;
}
