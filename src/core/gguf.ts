// GGUF container files (ggml's docs/gguf.md, gguf.cpp): typed metadata, tensor infos and aligned
// tensor data, read within bounds and written in the layout llama.cpp loads.
//
//   u32 magic "GGUF"   u32 version (2 or 3)   u64 tensor_count   u64 metadata_kv_count
//   metadata_kv[]: string key, u32 value_type, value     (string = u64 length + UTF-8 bytes)
//   tensor_info[]: string name, u32 n_dims (<= 4), u64 ne[n_dims] (ne0 fastest), u32 ggml_type, u64 offset
//   zero padding to `general.alignment` (default 32), then the tensor data; offsets are relative
//   to the data start, multiples of the alignment, and (for llama.cpp) laid out in info order.
//
// Every count, length, dimension and offset is checked against the file's size before anything is
// allocated for it; the header is read in growing windows, so a multi-GB file is not read whole.
// Tensor data is handed out as views on the file's in-memory copy (files under 2 GiB) or read at
// its offset on demand: never copied twice.
import { check, LlamaAdapterError } from './errors.js';
import { ByteSource } from './fileio.js';
import { writeFileAtomic } from './fs.js';

export const GGUF_MAGIC = 0x46554747; // "GGUF" little-endian
const DEFAULT_ALIGNMENT = 32;
const MAX_TENSORS = 1 << 16;
const MAX_KV = 1 << 16;
const MAX_KEY = 65535;
const MAX_DIMS = 4;

/** Metadata value types (gguf_metadata_value_type). */
export const GgufType = {
  UINT8: 0,
  INT8: 1,
  UINT16: 2,
  INT16: 3,
  UINT32: 4,
  INT32: 5,
  FLOAT32: 6,
  BOOL: 7,
  STRING: 8,
  ARRAY: 9,
  UINT64: 10,
  INT64: 11,
  FLOAT64: 12,
} as const;
type ValueType = (typeof GgufType)[keyof typeof GgufType];

const TYPE_NAMES = ['UINT8', 'INT8', 'UINT16', 'INT16', 'UINT32', 'INT32', 'FLOAT32', 'BOOL', 'STRING', 'ARRAY', 'UINT64', 'INT64', 'FLOAT64'];
const SCALAR_BYTES = [1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8];

/** A metadata array: numbers in a typed array (ints wider than 32 bits as float64), strings as strings. */
export type GgufArray =
  | { type: Exclude<ValueType, 8 | 9>; values: Uint8Array | Int8Array | Uint16Array | Int16Array | Uint32Array | Int32Array | Float32Array | Float64Array }
  | { type: 8; values: string[] };

export type GgufValue = number | boolean | string | GgufArray;

export interface GgufKv {
  type: ValueType;
  value: GgufValue;
}

/** ggml tensor types by id: name, values per block, bytes per block. */
export const GGML_TYPES: Readonly<Record<number, { name: string; block: number; bytes: number }>> = {
  0: { name: 'F32', block: 1, bytes: 4 },
  1: { name: 'F16', block: 1, bytes: 2 },
  2: { name: 'Q4_0', block: 32, bytes: 18 },
  3: { name: 'Q4_1', block: 32, bytes: 20 },
  6: { name: 'Q5_0', block: 32, bytes: 22 },
  7: { name: 'Q5_1', block: 32, bytes: 24 },
  8: { name: 'Q8_0', block: 32, bytes: 34 },
  9: { name: 'Q8_1', block: 32, bytes: 36 },
  10: { name: 'Q2_K', block: 256, bytes: 84 },
  11: { name: 'Q3_K', block: 256, bytes: 110 },
  12: { name: 'Q4_K', block: 256, bytes: 144 },
  13: { name: 'Q5_K', block: 256, bytes: 176 },
  14: { name: 'Q6_K', block: 256, bytes: 210 },
  15: { name: 'Q8_K', block: 256, bytes: 292 },
  16: { name: 'IQ2_XXS', block: 256, bytes: 66 },
  17: { name: 'IQ2_XS', block: 256, bytes: 74 },
  18: { name: 'IQ3_XXS', block: 256, bytes: 98 },
  19: { name: 'IQ1_S', block: 256, bytes: 50 },
  20: { name: 'IQ4_NL', block: 32, bytes: 18 },
  21: { name: 'IQ3_S', block: 256, bytes: 110 },
  22: { name: 'IQ2_S', block: 256, bytes: 82 },
  23: { name: 'IQ4_XS', block: 256, bytes: 136 },
  24: { name: 'I8', block: 1, bytes: 1 },
  25: { name: 'I16', block: 1, bytes: 2 },
  26: { name: 'I32', block: 1, bytes: 4 },
  27: { name: 'I64', block: 1, bytes: 8 },
  28: { name: 'F64', block: 1, bytes: 8 },
  29: { name: 'IQ1_M', block: 256, bytes: 56 },
  30: { name: 'BF16', block: 1, bytes: 2 },
  34: { name: 'TQ1_0', block: 256, bytes: 54 },
  35: { name: 'TQ2_0', block: 256, bytes: 66 },
  39: { name: 'MXFP4', block: 32, bytes: 17 },
};

export function ggmlTypeName(id: number): string {
  return GGML_TYPES[id]?.name ?? `unknown type ${id}`;
}

export interface GgufTensorInfo {
  name: string;
  dims: number[]; // ne0 first (the fastest-varying dimension)
  type: number; // ggml type id
  offset: number; // absolute byte offset in the file
  bytes: number;
}

export interface GgufFile {
  path: string;
  version: number;
  alignment: number;
  metadata: Map<string, GgufKv>;
  tensors: GgufTensorInfo[];
  dataOffset: number; // absolute offset of the tensor data
  source: ByteSource;
}

/** A cursor over the file's header, reading further windows of the file as it goes. */
class HeaderReader {
  pos = 0;
  private buf: Uint8Array = new Uint8Array(0);
  private dv: DataView = new DataView(new ArrayBuffer(0));
  private start = 0; // file offset of buf[0]
  private readonly decoder = new TextDecoder('utf-8', { fatal: true });

  constructor(private readonly src: ByteSource) {}

  fail(what: string): never {
    throw new LlamaAdapterError(`${this.src.path}: not a valid GGUF file: ${what}`);
  }

  get left(): number {
    return this.src.size - this.pos;
  }

  /** Make bytes [pos, pos + n) readable (n checked against the file's end first). */
  private need(n: number, what: string): number {
    if (n > this.left) this.fail(`${what} at byte ${this.pos} needs ${n} bytes, but the file ends at byte ${this.src.size} (truncated?)`);
    const end = this.pos + n;
    if (this.pos < this.start || end > this.start + this.buf.length) {
      const len = Math.min(this.src.size - this.pos, Math.max(n, 1 << 20, 2 * this.buf.length));
      this.buf = this.src.bytes(this.pos, len);
      this.dv = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
      this.start = this.pos;
    }
    const at = this.pos - this.start;
    this.pos = end;
    return at;
  }

  // (need() may move the window: call it before reading this.buf / this.dv)
  u32(what: string): number {
    const at = this.need(4, what);
    return this.dv.getUint32(at, true);
  }
  /** A u64 as a number (exact up to 2^53; larger values fail as out of range). */
  u64(what: string): number {
    const at = this.need(8, what);
    const lo = this.dv.getUint32(at, true);
    const hi = this.dv.getUint32(at + 4, true);
    if (hi >= 1 << 21) this.fail(`${what} is ${(BigInt(hi) << 32n) | BigInt(lo)}, out of range`);
    return hi * 2 ** 32 + lo;
  }

  scalar(type: ValueType, what: string): number | boolean {
    const at = this.need(SCALAR_BYTES[type], what);
    const dv = this.dv;
    switch (type) {
      case GgufType.UINT8:
        return dv.getUint8(at);
      case GgufType.INT8:
        return dv.getInt8(at);
      case GgufType.UINT16:
        return dv.getUint16(at, true);
      case GgufType.INT16:
        return dv.getInt16(at, true);
      case GgufType.UINT32:
        return dv.getUint32(at, true);
      case GgufType.INT32:
        return dv.getInt32(at, true);
      case GgufType.FLOAT32:
        return dv.getFloat32(at, true);
      case GgufType.BOOL: {
        const b = dv.getUint8(at);
        if (b > 1) this.fail(`${what} is a bool of value ${b} (expected 0 or 1)`);
        return b === 1;
      }
      case GgufType.UINT64:
        return Number(dv.getBigUint64(at, true));
      case GgufType.INT64:
        return Number(dv.getBigInt64(at, true));
      case GgufType.FLOAT64:
        return dv.getFloat64(at, true);
      default:
        return this.fail(`${what}: ${TYPE_NAMES[type]} is not a scalar type`);
    }
  }

  string(what: string, max = Number.MAX_SAFE_INTEGER): string {
    const n = this.u64(`${what} length`);
    if (n > max) this.fail(`${what} is ${n} bytes long (at most ${max} allowed)`);
    const at = this.need(n, what);
    try {
      return this.decoder.decode(this.buf.subarray(at, at + n));
    } catch {
      return this.fail(`${what} at byte ${this.pos - n} is not valid UTF-8`);
    }
  }

  valueType(what: string): ValueType {
    const t = this.u32(`${what} type`);
    if (t > 12) this.fail(`${what} has unknown value type ${t}`);
    return t as ValueType;
  }

  value(type: ValueType, what: string): GgufValue {
    if (type === GgufType.STRING) return this.string(what);
    if (type !== GgufType.ARRAY) return this.scalar(type, what);
    const et = this.valueType(`${what} element`);
    if (et === GgufType.ARRAY) this.fail(`${what} is an array of arrays, which is not supported`);
    const count = this.u64(`${what} count`);
    // every element takes at least one byte (a string at least 8): a huge count fails here, before any allocation
    const minBytes = et === GgufType.STRING ? 8 : SCALAR_BYTES[et];
    if (count * minBytes > this.left) this.fail(`${what} has ${count} elements, more than the ${this.left} bytes left in the file can hold`);
    if (et === GgufType.STRING) {
      const values: string[] = new Array(count);
      for (let i = 0; i < count; i++) values[i] = this.string(`${what}[${i}]`);
      return { type: et, values };
    }
    const make = {
      0: Uint8Array,
      1: Int8Array,
      2: Uint16Array,
      3: Int16Array,
      4: Uint32Array,
      5: Int32Array,
      6: Float32Array,
      7: Uint8Array,
      10: Float64Array,
      11: Float64Array,
      12: Float64Array,
    }[et];
    const values = new make(count);
    for (let i = 0; i < count; i++) values[i] = Number(this.scalar(et, `${what}[${i}]`));
    return { type: et, values } as GgufArray;
  }
}

/** Read a GGUF file's header, metadata and tensor infos (the data stays on disk or in the file's buffer). */
export function readGguf(path: string, options: { lazy?: boolean } = {}): GgufFile {
  const src = new ByteSource(path, { lazy: options.lazy });
  const r = new HeaderReader(src);
  const magic = r.u32('magic');
  if (magic !== GGUF_MAGIC) r.fail(`magic is 0x${magic.toString(16).padStart(8, '0')}, expected "GGUF" (0x46554747)`);
  const version = r.u32('version');
  if (version === 0x03000000 || version === 0x02000000) {
    throw new LlamaAdapterError(`${path}: big-endian GGUF files are not supported`);
  }
  if (version !== 2 && version !== 3) {
    throw new LlamaAdapterError(`${path}: GGUF version ${version} is not supported (supported: 2, 3)`);
  }
  const nTensors = r.u64('tensor_count');
  const nKv = r.u64('metadata_kv_count');
  if (nTensors > MAX_TENSORS) r.fail(`tensor_count is ${nTensors} (at most ${MAX_TENSORS} supported)`);
  if (nKv > MAX_KV) r.fail(`metadata_kv_count is ${nKv} (at most ${MAX_KV} supported)`);

  const metadata = new Map<string, GgufKv>();
  for (let i = 0; i < nKv; i++) {
    const key = r.string(`metadata key ${i}`, MAX_KEY);
    if (metadata.has(key)) r.fail(`metadata key "${key}" appears twice`);
    const type = r.valueType(`metadata "${key}"`);
    metadata.set(key, { type, value: r.value(type, `metadata "${key}"`) });
  }

  let alignment = DEFAULT_ALIGNMENT;
  const al = metadata.get('general.alignment');
  if (al) {
    const v = al.value;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 1 << 20 || (v & (v - 1)) !== 0) {
      return r.fail(`general.alignment is ${JSON.stringify(v)}, expected a power of two`);
    }
    alignment = v;
  }

  const raw: { name: string; dims: number[]; type: number; rel: number }[] = [];
  const names = new Set<string>();
  for (let i = 0; i < nTensors; i++) {
    const name = r.string(`tensor ${i} name`, 1024);
    if (names.has(name)) r.fail(`tensor "${name}" appears twice`);
    names.add(name);
    const nd = r.u32(`tensor "${name}" n_dims`);
    if (nd < 1 || nd > MAX_DIMS) r.fail(`tensor "${name}" has ${nd} dimensions (1 to ${MAX_DIMS} supported)`);
    const dims: number[] = [];
    for (let d = 0; d < nd; d++) dims.push(r.u64(`tensor "${name}" dimension ${d}`));
    const type = r.u32(`tensor "${name}" type`);
    const rel = r.u64(`tensor "${name}" offset`);
    raw.push({ name, dims, type, rel });
  }
  const dataOffset = Math.ceil(r.pos / alignment) * alignment;
  if (nTensors > 0 && dataOffset > src.size) r.fail(`tensor data would start at byte ${dataOffset}, past the end of the file (${src.size} bytes)`);

  const tensors: GgufTensorInfo[] = raw.map(({ name, dims, type, rel }) => {
    const t = GGML_TYPES[type];
    if (!t) r.fail(`tensor "${name}" has unknown ggml type ${type}`);
    let n = 1;
    for (const d of dims) {
      if (d < 1) r.fail(`tensor "${name}" has dimension ${d}`);
      n *= d;
      if (n > src.size * 8) r.fail(`tensor "${name}" has dimensions ${dims.join(' x ')}, more values than the file can hold`);
    }
    if (dims[0] % t.block !== 0) r.fail(`tensor "${name}" (${t.name}) has ${dims[0]} columns, not a multiple of its block size ${t.block}`);
    const bytes = (n / t.block) * t.bytes;
    if (rel % alignment !== 0) r.fail(`tensor "${name}" has offset ${rel}, not a multiple of the alignment ${alignment}`);
    const offset = dataOffset + rel;
    if (offset + bytes > src.size) {
      r.fail(
        `tensor "${name}" (${t.name}, ${dims.join(' x ')}) at data offset ${rel} needs ${bytes} bytes, past the end of the file (${src.size} bytes; truncated?)`,
      );
    }
    return { name, dims, type, offset, bytes };
  });
  return { path, version, alignment, metadata, tensors, dataOffset, source: src };
}

// ---------------------------------------------------------------- writing

export type GgufWriteValue =
  | { type: Exclude<ValueType, 8 | 9>; value: number | boolean }
  | { type: 8; value: string }
  | { type: 9; elementType: Exclude<ValueType, 9>; value: readonly (number | boolean | string)[] | ArrayLike<number> };

export interface GgufWriteTensor {
  name: string;
  dims: readonly number[]; // ne0 first
  type: number; // ggml type id
  data: Uint8Array;
}

/** Bytes builder for the header. */
class Bytes {
  private parts: Uint8Array[] = [];
  private cur = new Uint8Array(1 << 16);
  private dv = new DataView(this.cur.buffer);
  private n = 0;
  length = 0;

  private room(k: number): void {
    if (this.n + k <= this.cur.length) return;
    this.parts.push(this.cur.subarray(0, this.n));
    this.cur = new Uint8Array(Math.max(1 << 16, k));
    this.dv = new DataView(this.cur.buffer);
    this.n = 0;
  }
  scalar(type: ValueType, v: number | boolean): void {
    const k = SCALAR_BYTES[type];
    this.room(k);
    const at = this.n;
    const x = typeof v === 'boolean' ? Number(v) : v;
    switch (type) {
      case GgufType.UINT8:
      case GgufType.BOOL:
        this.dv.setUint8(at, x);
        break;
      case GgufType.INT8:
        this.dv.setInt8(at, x);
        break;
      case GgufType.UINT16:
        this.dv.setUint16(at, x, true);
        break;
      case GgufType.INT16:
        this.dv.setInt16(at, x, true);
        break;
      case GgufType.UINT32:
        this.dv.setUint32(at, x, true);
        break;
      case GgufType.INT32:
        this.dv.setInt32(at, x, true);
        break;
      case GgufType.FLOAT32:
        this.dv.setFloat32(at, x, true);
        break;
      case GgufType.UINT64:
        this.dv.setBigUint64(at, BigInt(x), true);
        break;
      case GgufType.INT64:
        this.dv.setBigInt64(at, BigInt(x), true);
        break;
      case GgufType.FLOAT64:
        this.dv.setFloat64(at, x, true);
        break;
    }
    this.n += k;
    this.length += k;
  }
  raw(b: Uint8Array): void {
    this.room(b.length);
    this.cur.set(b, this.n);
    this.n += b.length;
    this.length += b.length;
  }
  string(s: string): void {
    const b = Buffer.from(s, 'utf8');
    this.scalar(GgufType.UINT64, b.length);
    this.raw(b);
  }
  done(): Uint8Array[] {
    return [...this.parts, this.cur.subarray(0, this.n)];
  }
}

/**
 * Write a GGUF v3 file atomically: metadata in the given order, tensors laid out contiguously in
 * the given order at `alignment` (as gguf.cpp requires), `general.alignment` written when not 32.
 */
export function writeGguf(
  path: string,
  metadata: readonly [string, GgufWriteValue][],
  tensors: readonly GgufWriteTensor[],
  alignment = DEFAULT_ALIGNMENT,
): void {
  check(alignment > 0 && (alignment & (alignment - 1)) === 0, `GGUF alignment ${alignment} is not a power of two`);
  const kv: [string, GgufWriteValue][] = [...metadata];
  if (alignment !== DEFAULT_ALIGNMENT && !kv.some(([k]) => k === 'general.alignment'))
    kv.push(['general.alignment', { type: GgufType.UINT32, value: alignment }]);
  const h = new Bytes();
  h.scalar(GgufType.UINT32, GGUF_MAGIC);
  h.scalar(GgufType.UINT32, 3);
  h.scalar(GgufType.UINT64, tensors.length);
  h.scalar(GgufType.UINT64, kv.length);
  for (const [key, v] of kv) {
    h.string(key);
    h.scalar(GgufType.UINT32, v.type);
    if (v.type === GgufType.STRING) h.string(v.value);
    else if (v.type === GgufType.ARRAY) {
      h.scalar(GgufType.UINT32, v.elementType);
      h.scalar(GgufType.UINT64, v.value.length);
      for (let i = 0; i < v.value.length; i++) {
        const e = (v.value as ArrayLike<number | boolean | string>)[i];
        if (v.elementType === GgufType.STRING) h.string(String(e));
        else h.scalar(v.elementType, e as number | boolean);
      }
    } else h.scalar(v.type, v.value);
  }
  let rel = 0;
  const pad = (n: number): number => Math.ceil(n / alignment) * alignment;
  for (const t of tensors) {
    const info = GGML_TYPES[t.type];
    check(info !== undefined, `GGUF writer: unknown ggml type ${t.type} for tensor "${t.name}"`);
    const n = t.dims.reduce((a, b) => a * b, 1);
    check(
      t.data.length === (n / info.block) * info.bytes,
      `GGUF writer: tensor "${t.name}" has ${t.data.length} bytes, expected ${(n / info.block) * info.bytes}`,
    );
    h.string(t.name);
    h.scalar(GgufType.UINT32, t.dims.length);
    for (const d of t.dims) h.scalar(GgufType.UINT64, d);
    h.scalar(GgufType.UINT32, t.type);
    h.scalar(GgufType.UINT64, rel);
    rel = pad(rel + t.data.length);
  }
  const parts: Uint8Array[] = h.done();
  parts.push(new Uint8Array(pad(h.length) - h.length));
  for (const t of tensors) {
    parts.push(t.data);
    parts.push(new Uint8Array(pad(t.data.length) - t.data.length));
  }
  writeFileAtomic(path, parts);
}
