// Random access to a file's bytes, whatever holds them: ByteReader is what the format readers
// (safetensors, GGUF) take; MemoryBytes serves bytes already in memory (a fetched file in a page,
// a test), core/fileio.ts's ByteSource a file on disk. No file system here (the browser build uses it).
import { LlamaAdapterError } from './errors.js';

export interface ByteReader {
  /** What errors call the file. */
  readonly path: string;
  /** Its size in bytes. */
  readonly size: number;
  /** `length` bytes at `offset` (a view where possible). */
  bytes(offset: number, length: number): Uint8Array;
  /** `count` little-endian float32 values at `offset`: a view when aligned in memory, else a copy. */
  f32(offset: number, count: number): Float32Array;
  /** `count` little-endian uint16 values at `offset`: a view when aligned, else a copy. */
  u16(offset: number, count: number): Uint16Array;
  /** `count` little-endian int32 values at `offset`: a view when aligned, else a copy. */
  i32(offset: number, count: number): Int32Array;
}

type View = Float32Array | Uint16Array | Int32Array;

/** A ByteReader over bytes in memory; arrays it returns alias them where aligned. */
export class MemoryBytes implements ByteReader {
  readonly size: number;

  constructor(
    readonly path: string,
    private readonly data: Uint8Array,
  ) {
    this.size = data.byteLength;
  }

  bytes(offset: number, length: number): Uint8Array {
    this.check(offset, length);
    return this.data.subarray(offset, offset + length);
  }

  f32(offset: number, count: number): Float32Array {
    return this.typed(Float32Array, offset, count);
  }

  u16(offset: number, count: number): Uint16Array {
    return this.typed(Uint16Array, offset, count);
  }

  i32(offset: number, count: number): Int32Array {
    return this.typed(Int32Array, offset, count);
  }

  private typed<T extends View>(
    C: { new (b: ArrayBufferLike, o: number, n: number): T; new (n: number): T; BYTES_PER_ELEMENT: number },
    offset: number,
    count: number,
  ): T {
    const n = count * C.BYTES_PER_ELEMENT;
    this.check(offset, n);
    const at = this.data.byteOffset + offset;
    if (at % C.BYTES_PER_ELEMENT === 0) return new C(this.data.buffer, at, count);
    const out = new C(count);
    new Uint8Array(out.buffer).set(this.data.subarray(offset, offset + n));
    return out;
  }

  private check(offset: number, length: number): void {
    if (!(offset >= 0 && length >= 0 && offset + length <= this.size)) {
      throw new LlamaAdapterError(`${this.path}: read of ${length} bytes at offset ${offset} goes past the end of the file (${this.size} bytes)`);
    }
  }
}

/** Bytes of a typed array as a Uint8Array view (no copy). */
export function asBytes(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}
