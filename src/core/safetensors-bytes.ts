// The safetensors format over bytes (no file system: the browser build uses it as it is): an
// 8-byte little-endian header length, a JSON header ({name: {dtype, shape, data_offsets}} plus an
// optional "__metadata__" string map), then the raw little-endian tensor bytes, which the tensors
// must tile exactly. The reader validates the header thoroughly and converts tensors to f32 / bf16
// / int32 on request, from any ByteReader (a file read lazily, core/safetensors.ts; bytes in
// memory); the writer gives the file's bytes in parts.
import { LlamaAdapterError, check } from './errors.js';
import { bf16ToF32, f16ToF32, toBf16 } from './weights.js';
import { asBytes, type ByteReader, MemoryBytes } from './bytes.js';

/** Bytes per element of every dtype the safetensors format defines. */
const DTYPE_BYTES = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
} as const;

export type SafetensorsDtype = keyof typeof DTYPE_BYTES;

function isSafetensorsDtype(s: string): s is SafetensorsDtype {
  return Object.hasOwn(DTYPE_BYTES, s);
}

export interface TensorInfo {
  dtype: SafetensorsDtype;
  shape: number[];
}

interface Entry extends TensorInfo {
  begin: number; // byte offsets relative to the start of the data section
  end: number;
}

/** Header JSON larger than this is rejected (the reference implementation's limit). */
const MAX_HEADER = 100 * 1024 * 1024;

export interface SafetensorsFile {
  readonly path: string;
  /** The `__metadata__` map ({} when absent). */
  readonly metadata: Record<string, string>;
  /** Tensor names in header order. */
  names(): string[];
  has(name: string): boolean;
  info(name: string): TensorInfo;
  /** F32 (a view on the file when 4-byte aligned in memory), F16, BF16 or F64, as float32. */
  tensorF32(name: string): Float32Array;
  /** BF16 as stored; F32/F16/F64 rounded to nearest even. */
  tensorBf16(name: string): Uint16Array;
  /** I32 as stored; I64 narrowed (values outside int32 are an error). */
  tensorInt32(name: string): Int32Array;
  /** The raw bytes of a tensor. */
  tensorBytes(name: string): Uint8Array;
}

/** Validate a safetensors file held in `src`. Arrays it returns may alias src's bytes. */
export function parseSafetensors(src: ByteReader): SafetensorsFile {
  return new SafetensorsReader(src);
}

/** A safetensors file from its bytes in memory; `name` is what errors call it. */
export function safetensorsFromBytes(name: string, bytes: Uint8Array): SafetensorsFile {
  return new SafetensorsReader(new MemoryBytes(name, bytes));
}

class SafetensorsReader implements SafetensorsFile {
  readonly path: string;
  readonly metadata: Record<string, string>;
  private readonly src: ByteReader;
  private readonly entries: Map<string, Entry>;
  private readonly dataStart: number; // absolute file offset of the data section

  constructor(src: ByteReader) {
    this.src = src;
    const p = (this.path = src.path);
    check(src.size >= 8, `${p}: file is ${src.size} bytes, too short for a safetensors header`);
    const lenBytes = src.bytes(0, 8);
    const n = Number(new DataView(lenBytes.buffer, lenBytes.byteOffset, 8).getBigUint64(0, true));
    check(n <= src.size - 8, `${p}: header length ${n} is larger than the file (${src.size} bytes): truncated, or not a safetensors file`);
    check(n <= MAX_HEADER, `${p}: header length ${n} exceeds the ${MAX_HEADER}-byte limit`);
    check(n >= 2, `${p}: header length ${n} is too small to hold a JSON object`);
    this.dataStart = 8 + n;
    const dataSize = src.size - this.dataStart;

    const text = new TextDecoder('utf-8', { fatal: false }).decode(src.bytes(8, n));
    let header: unknown;
    try {
      header = JSON.parse(text);
    } catch (e) {
      throw new LlamaAdapterError(`${p}: header is not valid JSON (${e instanceof Error ? e.message : String(e)})`, { cause: e });
    }
    check(
      typeof header === 'object' && header !== null && !Array.isArray(header),
      () => `${p}: header is not a JSON object (got ${Array.isArray(header) ? 'an array' : typeof header})`,
    );

    this.metadata = {};
    this.entries = new Map();
    for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
      if (name === '__metadata__') {
        this.metadata = parseMetadata(p, raw);
        continue;
      }
      this.entries.set(name, parseEntry(p, name, raw, dataSize));
    }

    // the tensors tile the data section exactly, as the format requires: sorted by offset, each
    // begins where the previous one ends, the first at 0 and the last at the end of the file (an
    // inserted or dropped byte, trailing bytes or a gap would otherwise load shifted garbage)
    const sorted = [...this.entries].sort((a, b) => a[1].begin - b[1].begin || a[1].end - b[1].end);
    let at = 0;
    let prev = '';
    for (const [cn, ce] of sorted) {
      if (ce.begin !== at) {
        const where = prev ? `after tensor "${prev}", which ends at ${at}` : 'at the start of the data section';
        throw new LlamaAdapterError(
          `${p}: tensor "${cn}" (data_offsets [${ce.begin}, ${ce.end}]) ${ce.begin < at ? 'overlaps the data' : 'leaves a gap of unused bytes'} ${where}`,
        );
      }
      at = ce.end;
      prev = cn;
    }
    check(
      at === dataSize,
      () => `${p}: the tensors cover ${at} bytes of the ${dataSize}-byte data section (${dataSize - at} bytes of trailing data, or a truncated header)`,
    );
  }

  names(): string[] {
    return [...this.entries.keys()];
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  info(name: string): TensorInfo {
    const e = this.entry(name);
    return { dtype: e.dtype, shape: [...e.shape] };
  }

  tensorBytes(name: string): Uint8Array {
    const e = this.entry(name);
    return this.src.bytes(this.dataStart + e.begin, e.end - e.begin);
  }

  tensorF32(name: string): Float32Array {
    const e = this.entry(name);
    const off = this.dataStart + e.begin;
    const count = (e.end - e.begin) / DTYPE_BYTES[e.dtype];
    switch (e.dtype) {
      case 'F32':
        return this.src.f32(off, count);
      case 'BF16':
        return bf16ToF32(this.src.u16(off, count));
      case 'F16':
        return f16ToF32(this.src.u16(off, count));
      case 'F64': {
        const b = this.src.bytes(off, count * 8);
        const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
        const out = new Float32Array(count);
        for (let i = 0; i < count; i++) out[i] = dv.getFloat64(8 * i, true);
        return out;
      }
      default:
        throw new LlamaAdapterError(
          `${this.path}: tensor "${name}" has dtype ${e.dtype}, which cannot be read as floating point (supported: F32, F16, BF16, F64)`,
        );
    }
  }

  tensorBf16(name: string): Uint16Array {
    const e = this.entry(name);
    if (e.dtype === 'BF16') return this.src.u16(this.dataStart + e.begin, (e.end - e.begin) / 2);
    return toBf16(this.tensorF32(name));
  }

  tensorInt32(name: string): Int32Array {
    const e = this.entry(name);
    const off = this.dataStart + e.begin;
    const count = (e.end - e.begin) / DTYPE_BYTES[e.dtype];
    if (e.dtype === 'I32') return this.src.i32(off, count);
    if (e.dtype === 'I64') {
      const b = this.src.bytes(off, count * 8);
      const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
      const out = new Int32Array(count);
      for (let i = 0; i < count; i++) {
        const v = dv.getBigInt64(8 * i, true);
        check(v >= -2147483648n && v <= 2147483647n, () => `${this.path}: tensor "${name}" element ${i} (${v}) does not fit in int32`);
        out[i] = Number(v);
      }
      return out;
    }
    throw new LlamaAdapterError(`${this.path}: tensor "${name}" has dtype ${e.dtype}, which cannot be read as integers (supported: I32, I64)`);
  }

  private entry(name: string): Entry {
    const e = this.entries.get(name);
    if (!e) throw new LlamaAdapterError(`${this.path}: no tensor "${name}"`);
    return e;
  }
}

function parseMetadata(p: string, raw: unknown): Record<string, string> {
  check(typeof raw === 'object' && raw !== null && !Array.isArray(raw), `${p}: "__metadata__" must be an object mapping strings to strings`);
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
    check(typeof v === 'string', () => `${p}: "__metadata__" field "${k}" is ${JSON.stringify(v)}, expected a string`);
    out[k] = v;
  }
  return out;
}

function parseEntry(p: string, name: string, raw: unknown, dataSize: number): Entry {
  const t = `${p}: tensor "${name}"`;
  check(typeof raw === 'object' && raw !== null && !Array.isArray(raw), `${t}: entry is not an object`);
  const o = raw as Record<string, unknown>;
  check('dtype' in o, `${t}: missing "dtype"`);
  check('shape' in o, `${t}: missing "shape"`);
  check('data_offsets' in o, `${t}: missing "data_offsets"`);
  const { dtype, shape, data_offsets: offs } = o;
  check(typeof dtype === 'string', () => `${t}: "dtype" is ${JSON.stringify(dtype)}, expected a string`);
  check(isSafetensorsDtype(dtype), () => `${t}: unknown dtype "${dtype}" (known: ${Object.keys(DTYPE_BYTES).join(', ')})`);
  check(
    Array.isArray(shape) && shape.every((d) => Number.isSafeInteger(d) && d >= 0),
    () => `${t}: "shape" is ${JSON.stringify(shape)}, expected a list of non-negative integers`,
  );
  check(
    Array.isArray(offs) && offs.length === 2 && offs.every((d) => Number.isSafeInteger(d) && d >= 0),
    () => `${t}: "data_offsets" is ${JSON.stringify(offs)}, expected [begin, end] with non-negative integers`,
  );
  const [begin, end] = offs as number[];
  check(end >= begin, `${t}: data_offsets [${begin}, ${end}] end before they begin`);
  check(end <= dataSize, `${t}: data_offsets [${begin}, ${end}] point outside the file (data section is ${dataSize} bytes)`);
  const dims = shape as number[];
  const need = dims.reduce((a, b) => a * b, 1) * DTYPE_BYTES[dtype];
  check(
    end - begin === need,
    `${t}: data_offsets [${begin}, ${end}] hold ${end - begin} bytes but dtype ${dtype} shape [${dims.join(', ')}] needs ${need} bytes`,
  );
  return { dtype, shape: dims, begin, end };
}

// ---------------------------------------------------------------- writer

export type WritableTensor =
  | { name: string; dtype: 'F32'; shape: readonly number[]; data: Float32Array }
  | { name: string; dtype: 'I32'; shape: readonly number[]; data: Int32Array }
  | { name: string; dtype: 'BF16' | 'F16'; shape: readonly number[]; data: Uint16Array };

/**
 * A safetensors file's bytes, in parts (length, header, then each tensor's bytes, as views): tensors
 * stored back to back in the given order; the header padded with spaces to 8-byte alignment. `path`
 * is what errors call the file.
 */
export function safetensorsParts(path: string, tensors: readonly WritableTensor[], metadata: Record<string, string> = {}): Uint8Array[] {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) {
    for (const [k, v] of Object.entries(metadata)) {
      check(typeof v === 'string', `${path}: metadata field "${k}" must be a string`);
    }
    header.__metadata__ = metadata;
  }
  let off = 0;
  for (const t of tensors) {
    check(t.name !== '__metadata__', `${path}: a tensor cannot be named "__metadata__"`);
    check(!(t.name in header), `${path}: tensor "${t.name}" is given twice`);
    check(isSafetensorsDtype(t.dtype), `${path}: tensor "${t.name}": cannot write dtype ${String(t.dtype)}`);
    check(
      t.shape.every((d) => Number.isSafeInteger(d) && d >= 0),
      `${path}: tensor "${t.name}": bad shape [${t.shape.join(', ')}]`,
    );
    const numel = t.shape.reduce((a, b) => a * b, 1);
    check(numel === t.data.length, `${path}: tensor "${t.name}": shape [${t.shape.join(', ')}] has ${numel} elements but the data has ${t.data.length}`);
    header[t.name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [off, off + t.data.byteLength] };
    off += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  let hbytes = new TextEncoder().encode(json);
  const pad = (8 - (hbytes.length % 8)) % 8;
  if (pad) {
    json += ' '.repeat(pad);
    hbytes = new TextEncoder().encode(json);
  }
  const len = new Uint8Array(8);
  new DataView(len.buffer).setBigUint64(0, BigInt(hbytes.length), true);
  return [len, hbytes, ...tensors.map((t) => asBytes(t.data))];
}

/** The parts joined into one array. */
export function joinParts(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}
