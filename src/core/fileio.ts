// Random access to checkpoint files: small files (< 2 GB) are read once, whole, and sliced as
// views; larger ones are read lazily, tensor by tensor, with readSync at offsets, so a
// multi-GB checkpoint never needs the whole file and its converted weights in memory together.
// The whole-file copy is a large buffer (core/buffers.ts): views on it become a model's weights.
// Lazy reads are plain arrays, since a loader that converts them drops them at once (core/buffers.ts).
import * as fs from 'node:fs';
import { largeU8 } from './buffers.js';
import type { ByteReader } from './bytes.js';
import { LlamaAdapterError } from './errors.js';

export { asBytes } from './bytes.js';

/** Files up to this size are read into memory in one go (readFileSync's own limit is 2 GiB). */
const EAGER_LIMIT = 2 ** 31 - 1;
const CHUNK = 1 << 30; // readSync/writeSync move at most this many bytes per call

export interface ByteSourceOptions {
  /** Force lazy reads at offsets even for a small file (tests; memory-sensitive callers). */
  lazy?: boolean;
}

/**
 * A read-only file. Arrays returned by `bytes`/`f32`/`u16` may be views that alias the file's
 * in-memory copy (eager mode) or fresh copies (lazy mode or unaligned data); either way they
 * belong to the caller, who may modify them (nobody else reads that region again).
 */
export class ByteSource implements ByteReader {
  readonly path: string;
  readonly size: number;
  private buf: Buffer | null;

  constructor(path: string, options: ByteSourceOptions = {}) {
    this.path = path;
    let st: fs.Stats;
    try {
      st = fs.statSync(path);
    } catch (e) {
      throw ioError(path, e);
    }
    if (!st.isFile()) throw new LlamaAdapterError(`${path}: not a regular file`);
    this.size = st.size;
    this.buf = null;
    if (!options.lazy && st.size < EAGER_LIMIT) {
      this.buf = readWhole(path, st.size);
      // the file may have shrunk between stat and read
      this.size = this.buf.length;
    }
  }

  get lazy(): boolean {
    return this.buf === null;
  }

  /** `length` bytes at `offset` (a view in eager mode, a fresh copy in lazy mode). */
  bytes(offset: number, length: number): Uint8Array {
    this.checkRange(offset, length);
    // a plain Uint8Array, not a Buffer: Buffer#slice does not copy, Uint8Array#slice does
    if (this.buf) return new Uint8Array(this.buf.buffer, this.buf.byteOffset + offset, length);
    const out = new Uint8Array(length);
    this.readInto(offset, out);
    return out;
  }

  /** `count` little-endian float32 values at `offset`: a view when aligned in memory, else a copy. */
  f32(offset: number, count: number): Float32Array {
    this.checkRange(offset, count * 4);
    if (this.buf && (this.buf.byteOffset + offset) % 4 === 0) {
      return new Float32Array(this.buf.buffer, this.buf.byteOffset + offset, count);
    }
    const out = new Float32Array(count);
    this.readInto(offset, new Uint8Array(out.buffer));
    return out;
  }

  /** `count` little-endian uint16 values at `offset`: a view when aligned in memory, else a copy. */
  u16(offset: number, count: number): Uint16Array {
    this.checkRange(offset, count * 2);
    if (this.buf && (this.buf.byteOffset + offset) % 2 === 0) {
      return new Uint16Array(this.buf.buffer, this.buf.byteOffset + offset, count);
    }
    const out = new Uint16Array(count);
    this.readInto(offset, new Uint8Array(out.buffer));
    return out;
  }

  /** `count` little-endian int32 values at `offset`: a view when aligned in memory, else a copy. */
  i32(offset: number, count: number): Int32Array {
    this.checkRange(offset, count * 4);
    if (this.buf && (this.buf.byteOffset + offset) % 4 === 0) {
      return new Int32Array(this.buf.buffer, this.buf.byteOffset + offset, count);
    }
    const out = new Int32Array(count);
    this.readInto(offset, new Uint8Array(out.buffer));
    return out;
  }

  /** Copy `dest.length` bytes at `offset` into `dest`. */
  readInto(offset: number, dest: Uint8Array): void {
    this.checkRange(offset, dest.length);
    if (this.buf) {
      dest.set(this.buf.subarray(offset, offset + dest.length));
      return;
    }
    const done = readAt(this.path, offset, dest);
    if (done < dest.length) {
      throw new LlamaAdapterError(
        `${this.path}: file ended at byte ${offset + done} while reading ${dest.length} bytes at ${offset} (was it truncated while loading?)`,
      );
    }
  }

  private checkRange(offset: number, length: number): void {
    if (!(offset >= 0 && length >= 0 && offset + length <= this.size)) {
      throw new LlamaAdapterError(`${this.path}: read of ${length} bytes at offset ${offset} goes past the end of the file (${this.size} bytes)`);
    }
  }
}

/** The first `size` bytes of a file (fewer if it has shrunk since), in one large buffer. */
function readWhole(path: string, size: number): Buffer {
  const out = largeU8(size);
  return Buffer.from(out.buffer, 0, readAt(path, 0, out));
}

/** Read `dest.length` bytes at `offset` into `dest`, or fewer where the file ends first; the count read. */
function readAt(path: string, offset: number, dest: Uint8Array): number {
  let fd: number;
  try {
    fd = fs.openSync(path, 'r');
  } catch (e) {
    throw ioError(path, e);
  }
  let done = 0;
  try {
    while (done < dest.length) {
      const n = fs.readSync(fd, dest, done, Math.min(CHUNK, dest.length - done), offset + done);
      if (n === 0) break;
      done += n;
    }
  } catch (e) {
    throw ioError(path, e);
  } finally {
    fs.closeSync(fd);
  }
  return done;
}

/** Write all of `data` to `fd` (chunked: one writeSync call is limited to 2 GiB). */
export function writeAll(fd: number, data: Uint8Array): void {
  let done = 0;
  while (done < data.length) {
    done += fs.writeSync(fd, data, done, Math.min(CHUNK, data.length - done));
  }
}

/** A user-facing error for a failed file operation. */
export function ioError(path: string, e: unknown): LlamaAdapterError {
  const code = (e as { code?: unknown } | null)?.code;
  if (code === 'ENOENT') return new LlamaAdapterError(`${path}: no such file or directory`, { cause: e });
  if (code === 'EACCES' || code === 'EPERM') return new LlamaAdapterError(`${path}: permission denied`, { cause: e });
  if (code === 'EISDIR') return new LlamaAdapterError(`${path}: is a directory, expected a file`, { cause: e });
  const msg = e instanceof Error ? e.message : String(e);
  return new LlamaAdapterError(`${path}: ${msg}`, { cause: e });
}
