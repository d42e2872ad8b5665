// The one weight assembler every format loader feeds: it asks for the tensor of each canonical
// role (roles.ts), checks its shape against the config (errors name the file and the tensor),
// converts it to the requested in-memory dtype and feeds the fingerprint its float32 values
// before any bf16 rounding. Loaders only say where a role's tensor is and how to read it.
import type { ConfigFieldNames, LlamaConfig } from '../core/config.js';
import { keepLarge, largeF32, largeU16, largeU8 } from '../core/buffers.js';
import { LlamaAdapterError } from '../core/errors.js';
import { checkFinite } from '../core/finite.js';
import { dequantizeRow, isQuantDtype, QUANT_TYPES, quantizeRow, quantRowBytes } from '../core/quant.js';
import {
  bf16ToF32,
  bf16ToF32Into,
  f16ToF32,
  f16ToF32Into,
  toBf16Into,
  toF16Into,
  type LayerWeights,
  type Matrix,
  type ModelWeights,
  type QuantDtype,
  type WeightDtype,
} from '../core/weights.js';
import { FingerprintCollector, type TensorSample } from './fingerprint.js';
import { canonicalTensors, explainShape, LAYER_ROLES, shapeStr, type CanonicalTensor } from './roles.js';

/** A tensor the assembler wants: canonical, plus the dtype it will have in memory. */
export interface TensorRequest extends CanonicalTensor {
  dtype: WeightDtype; // matrices: the load dtype; norms: always 'f32'
}

/** The values of one tensor as a loader hands them over. */
export type TensorValues =
  | { dtype: 'f32'; data: Float32Array } // becomes (or is rounded into) the weight
  | { dtype: 'bf16'; data: Uint16Array } // bf16 bit patterns: kept for bf16, widened exactly for f32
  | { dtype: 'f16'; data: Uint16Array } // IEEE halves: kept for f16, widened exactly otherwise
  /** Generated in order, CHUNK values at a time (the last chunk may be shorter): never whole in f32 for bf16. */
  | { dtype: 'f32-chunks'; fill: (chunk: Float32Array, offset: number) => void }
  /** ggml blocks (row by row): kept as they are, whatever the load dtype (norms are dequantized). */
  | { dtype: QuantDtype; data: Uint8Array };

/** Where a loader found a requested tensor. `read` is called only after the shape check. */
export interface SourceTensor {
  file: string; // for messages
  name: string; // the tensor's name in that file
  shape: readonly number[]; // as stored
  read(): TensorValues;
}

export interface AssembleOptions {
  names?: ConfigFieldNames; // the format's names for config fields, for shape messages
  configFile?: string; // where the config came from, for shape messages
  checkFinite?: boolean; // refuse a tensor holding NaN/Inf (ReadModelOptions.checkTensors)
}

/** Chunk size of 'f32-chunks' values (even, so paired generators never split a pair but at the end). */
export const CHUNK = 1 << 16; // a multiple of every block size

export class WeightAssembler {
  /** Every tensor the config needs, in storage order; put() each one, then finish(). */
  readonly requests: TensorRequest[];
  private readonly config: LlamaConfig;
  private readonly dtype: WeightDtype;
  private readonly options: AssembleOptions;
  private readonly fp: FingerprintCollector;
  private readonly done = new Map<string, Matrix | Float32Array>(); // by canonical name

  constructor(config: LlamaConfig, dtype: WeightDtype, options: AssembleOptions = {}) {
    this.config = config;
    this.dtype = dtype;
    this.options = options;
    this.fp = new FingerprintCollector(config.nLayers);
    this.requests = canonicalTensors(config).map((t) => ({ ...t, dtype: t.spec.kind === 'norm' ? 'f32' : dtype }));
  }

  /** Check `src` against `req`, read it and convert it. */
  put(req: TensorRequest, src: SourceTensor): void {
    const want = req.shape;
    if (!(src.shape.length === want.length && src.shape.every((d, i) => d === want[i]))) {
      const from = this.options.configFile ? ` from ${this.options.configFile}` : '';
      throw new LlamaAdapterError(
        `${src.file}: tensor "${src.name}" has shape ${shapeStr(src.shape)}, expected ${shapeStr(want)} = ${explainShape(req, this.options.names)}${from}`,
      );
    }
    const v = src.read();
    if (this.options.checkFinite) checkValuesFinite(src, v);
    this.done.set(req.name, req.spec.kind === 'norm' ? this.norm(req.name, want[0], v) : this.matrix(req.name, want[0], want[1], v));
  }

  /** The weights and their fingerprint (every request must have been put). */
  finish(): { weights: ModelWeights; fingerprint: string } {
    const get = (name: string): Matrix | Float32Array => {
      const t = this.done.get(name);
      if (!t) throw new Error(`assembler: tensor ${name} was never put (loader bug)`);
      return t;
    };
    const layers: LayerWeights[] = [];
    for (let i = 0; i < this.config.nLayers; i++) {
      const l: Partial<Record<keyof LayerWeights, Matrix | Float32Array>> = {};
      for (const [role, spec] of Object.entries(LAYER_ROLES)) l[spec.field] = get(`blk.${i}.${role}`);
      layers.push(l as LayerWeights); // every field is filled: roleTable checks that at compile time
    }
    const tokEmbd = get('tok_embd') as Matrix;
    const weights: ModelWeights = {
      tokEmbd,
      layers,
      outputNorm: get('output_norm') as Float32Array,
      output: this.config.tiedEmbeddings ? tokEmbd : (get('output') as Matrix),
    };
    return { weights, fingerprint: this.fp.digest() };
  }

  /**
   * A norm vector (always float32). For bf16 loads it is copied, so that a view on an in-memory
   * file does not keep the whole (f32) file alive next to its bf16 conversion.
   */
  private norm(name: string, n: number, v: TensorValues): Float32Array {
    let data: Float32Array;
    if (v.dtype === 'f32') data = v.data;
    else if (v.dtype === 'bf16') data = bf16ToF32(v.data);
    else if (v.dtype === 'f16') data = f16ToF32(v.data);
    else if (v.dtype === 'f32-chunks') data = chunksF32(n, v.fill, null);
    else {
      data = new Float32Array(n);
      dequantizeRow(v.dtype, v.data, 0, data, 0, n);
    }
    this.fp.offerF32(name, [n], data);
    return this.dtype === 'bf16' && v.dtype === 'f32' ? data.slice() : data;
  }

  private matrix(name: string, rows: number, cols: number, v: TensorValues): Matrix {
    if (isQuantDtype(v.dtype)) {
      const data = (v as { data: Uint8Array }).data;
      this.sampleQuant(name, v.dtype, rows, cols, data);
      return { dtype: v.dtype, rows, cols, data: keepLarge(data) };
    }
    if (isQuantDtype(this.dtype)) return this.quantize(name, this.dtype, rows, cols, v as Exclude<TensorValues, { data: Uint8Array }>);
    if (v.dtype === 'f16' && this.dtype === 'f16') {
      this.fp.sampleFor(name, [rows, cols])?.feedF16(v.data);
      return { dtype: 'f16', rows, cols, data: keepLarge(v.data) };
    }
    // Converted values the model keeps go to large buffers; an intermediate (f16 -> f32 -> bf16) is
    // a plain array, which the GC frees as soon as the loop drops it (core/buffers.ts).
    const n = rows * cols;
    const keepF32 = this.dtype === 'f32';
    if (v.dtype === 'f16') v = { dtype: 'f32', data: widen(f16ToF32Into, v.data, keepF32) }; // exact, so the sample is the same
    if (v.dtype === 'bf16') {
      if (this.dtype === 'bf16') {
        this.fp.offerBf16(name, [rows, cols], v.data);
        return { dtype: 'bf16', rows, cols, data: keepLarge(v.data) };
      }
      const data = widen(bf16ToF32Into, v.data, keepF32); // exact, so the sample is the same
      this.fp.offerF32(name, [rows, cols], data);
      if (this.dtype === 'f16') return { dtype: 'f16', rows, cols, data: narrow(toF16Into, data, n) };
      return { dtype: 'f32', rows, cols, data };
    }
    if (v.dtype === 'f32-chunks') {
      if (this.dtype === 'f32') return { dtype: 'f32', rows, cols, data: chunksF32(rows * cols, v.fill, this.fp.sampleFor(name, [rows, cols])) };
      const round = this.dtype === 'f16' ? toF16Into : toBf16Into;
      return { dtype: this.dtype === 'f16' ? 'f16' : 'bf16', rows, cols, data: this.chunks16(name, rows, cols, v.fill, round) };
    }
    const data = (v as { data: Float32Array }).data; // f32 (the other kinds returned above)
    this.fp.offerF32(name, [rows, cols], data);
    if (this.dtype === 'f32') return { dtype: 'f32', rows, cols, data: keepLarge(data) };
    if (this.dtype === 'f16') return { dtype: 'f16', rows, cols, data: narrow(toF16Into, data, n) };
    return { dtype: 'bf16', rows, cols, data: narrow(toBf16Into, data, n) };
  }

  /** Fingerprint samples of a quantized matrix: its dequantized values (one block decoded per sample). */
  private sampleQuant(name: string, dtype: QuantDtype, rows: number, cols: number, data: Uint8Array): void {
    const sample = this.fp.sampleFor(name, [rows, cols]);
    if (!sample) return;
    const t = QUANT_TYPES[dtype];
    const rb = quantRowBytes(dtype, cols);
    const block = new Float32Array(t.block);
    let cached = -1;
    const one = new Float32Array(1);
    for (let i = 0; i < rows * cols; i += sample.stride) {
      const r = Math.floor(i / cols);
      const b = Math.floor((i % cols) / t.block);
      const key = r * (cols / t.block) + b;
      if (key !== cached) {
        dequantizeRow(dtype, data, r * rb + b * t.bytes, block, 0, t.block);
        cached = key;
      }
      one[0] = block[(i % cols) % t.block];
      sample.feedF32(one, i);
    }
  }

  /** Values quantized to `dtype` as they arrive (load-time quantization, synthetic quantized models). */
  private quantize(name: string, dtype: QuantDtype, rows: number, cols: number, v: Exclude<TensorValues, { data: Uint8Array }>): Matrix {
    const t = QUANT_TYPES[dtype];
    if (cols % t.block !== 0) {
      throw new LlamaAdapterError(
        `tensor ${name} has ${cols} columns, not a multiple of ${t.name}'s block size ${t.block}: it cannot be quantized to ${t.name}`,
      );
    }
    const n = rows * cols;
    const out = largeU8(rows * quantRowBytes(dtype, cols));
    const sample = this.fp.sampleFor(name, [rows, cols]);
    const perValue = t.bytes / t.block;
    const put = (chunk: Float32Array, off: number): void => {
      sample?.feedF32(chunk, off);
      quantizeRow(dtype, chunk, 0, chunk.length, out, off * perValue);
    };
    if (v.dtype === 'f32-chunks') {
      const scratch = new Float32Array(Math.min(n, CHUNK));
      for (let off = 0; off < n; off += CHUNK) {
        const chunk = scratch.subarray(0, Math.min(CHUNK, n - off));
        v.fill(chunk, off);
        put(chunk, off);
      }
    } else {
      const f = v.dtype === 'f32' ? v.data : v.dtype === 'f16' ? f16ToF32(v.data) : bf16ToF32(v.data);
      for (let off = 0; off < n; off += CHUNK) put(f.subarray(off, Math.min(n, off + CHUNK)), off);
    }
    return { dtype, rows, cols, data: out };
  }

  /** Chunked values rounded to bf16 or f16 chunk by chunk (the fingerprint samples them before rounding). */
  private chunks16(
    name: string,
    rows: number,
    cols: number,
    fill: (chunk: Float32Array, offset: number) => void,
    round: (out: Uint16Array, src: Float32Array, n: number) => void,
  ): Uint16Array {
    const n = rows * cols;
    const out = largeU16(n);
    const scratch = new Float32Array(Math.min(n, CHUNK));
    const sample = this.fp.sampleFor(name, [rows, cols]);
    for (let off = 0; off < n; off += CHUNK) {
      const len = Math.min(CHUNK, n - off);
      const chunk = scratch.subarray(0, len);
      fill(chunk, off);
      sample?.feedF32(chunk, off);
      round(out.subarray(off, off + len), chunk, len);
    }
    return out;
  }
}

/** NaN/Inf check of a tensor as handed over (bf16, f16: exponent all ones; generated chunks are not checked). */
function checkValuesFinite(src: SourceTensor, v: TensorValues): void {
  if (v.dtype === 'f32') checkFinite(src.file, src.name, v.data);
  else if (isQuantDtype(v.dtype)) {
    const rows = src.shape.length === 2 ? src.shape[0] : 1;
    const cols = src.shape[src.shape.length - 1];
    const f = new Float32Array(rows * cols);
    for (let r = 0; r < rows; r++) dequantizeRow(v.dtype, (v as { data: Uint8Array }).data, r * quantRowBytes(v.dtype, cols), f, r * cols, cols);
    checkFinite(src.file, src.name, f);
  } else if (v.dtype === 'bf16' || v.dtype === 'f16') {
    const e = v.dtype === 'bf16' ? 0x7f80 : 0x7c00; // the exponent bits
    const i = v.data.findIndex((b) => (b & e) === e);
    if (i >= 0)
      throw new LlamaAdapterError(
        `${src.file}: tensor "${src.name}" holds a non-finite ${v.dtype} value (0x${v.data[i].toString(16)} at element ${i} of ${v.data.length})`,
      );
  }
}

/** 16-bit patterns widened to float32, into a large buffer when the model keeps the result. */
function widen(into: (out: Float32Array, src: Uint16Array, n: number) => void, src: Uint16Array, keep: boolean): Float32Array {
  const out = keep ? largeF32(src.length) : new Float32Array(src.length);
  into(out, src, src.length);
  return out;
}

/** n float32 values rounded to 16-bit patterns (bf16 or f16) in a large buffer: what the model keeps. */
function narrow(into: (out: Uint16Array, src: Float32Array, n: number) => void, src: Float32Array, n: number): Uint16Array {
  const out = largeU16(n);
  into(out, src, n);
  return out;
}

/** Chunked values into one float32 array of n (each chunk fed to `sample`, if any). */
function chunksF32(n: number, fill: (chunk: Float32Array, offset: number) => void, sample: TensorSample | null): Float32Array {
  const out = largeF32(n);
  for (let off = 0; off < n; off += CHUNK) {
    const chunk = out.subarray(off, Math.min(n, off + CHUNK));
    fill(chunk, off);
    sample?.feedF32(chunk, off);
  }
  return out;
}

/** Assemble weights asking `find` for each requested tensor in storage order. */
export function assembleWeights(
  config: LlamaConfig,
  dtype: WeightDtype,
  find: (req: TensorRequest) => SourceTensor,
  options: AssembleOptions = {},
): { weights: ModelWeights; fingerprint: string } {
  const a = new WeightAssembler(config, dtype, options);
  for (const req of a.requests) a.put(req, find(req));
  return a.finish();
}
