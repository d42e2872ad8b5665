// Large, long-lived buffers (a model's weights): one place decides where they come from. By
// default a plain ArrayBuffer; the native backend installs its addon's allocator when it loads
// (2 MB-aligned memory advised for transparent huge pages, which decode streams faster: see
// native/addon.cc's hugeBuffer). Small requests always get a plain ArrayBuffer, and a failing or
// missing allocator falls back to one, so callers never see a difference but the speed.
// LLAMA_ADAPTER_HUGE_PAGES=0 turns the allocator off (A/B measurements).
//
// Only for what a model keeps: the addon's buffers are freed when the GC finds them dead, and V8
// does not collect in a synchronous loop for their sake as it does for its own ArrayBuffers (48
// dropped 32 MB buffers in a loop without a yield: +1,540 MB peak RSS, plain ones +133 MB; with a
// yield per buffer +165 MB). So intermediates a loader converts and drops at once (lazy tensor
// reads, f16 -> f32 -> bf16 steps) stay plain arrays, and the assembler copies a matrix it keeps
// into a large buffer (keepLarge) when it is not in one already.

/** Zeroed memory of `bytes`, or undefined when it cannot give it. */
export type LargeBufferAllocator = (bytes: number) => ArrayBuffer | undefined;

/** Below this many bytes a buffer cannot hold a whole 2 MB page: plain memory. */
export const LARGE_BUFFER_MIN = 2 * 1024 * 1024;

let allocator: LargeBufferAllocator | null = null;
/** Buffers the allocator gave. */
const given = new WeakSet<ArrayBufferLike>();

/** Install (or, with null, remove) the allocator for large buffers. */
export function setLargeBufferAllocator(a: LargeBufferAllocator | null): void {
  allocator = a;
}

/** Whether large buffers come from an installed allocator (and it is not turned off). */
export function largeBuffersInstalled(): boolean {
  return allocator !== null && globalThis.process?.env?.LLAMA_ADAPTER_HUGE_PAGES !== '0';
}

/** A zeroed buffer of `bytes` for data that lives as long as a model (weights). */
export function largeBuffer(bytes: number): ArrayBuffer {
  if (bytes >= LARGE_BUFFER_MIN && largeBuffersInstalled()) {
    const b = (allocator as LargeBufferAllocator)(bytes);
    if (b && b.byteLength === bytes) {
      given.add(b);
      return b;
    }
  }
  return new ArrayBuffer(bytes);
}

/** A zeroed Float32Array of n values in a large buffer. */
export const largeF32 = (n: number): Float32Array => new Float32Array(largeBuffer(n * 4));
/** A zeroed Uint16Array of n values in a large buffer (bf16, f16). */
export const largeU16 = (n: number): Uint16Array => new Uint16Array(largeBuffer(n * 2));
/** A zeroed Uint8Array of n bytes in a large buffer (quantized blocks, a file's bytes). */
export const largeU8 = (n: number): Uint8Array => new Uint8Array(largeBuffer(n));

/** Whether `b` came from the installed allocator. */
export function isLargeBuffer(b: ArrayBufferLike): boolean {
  return given.has(b);
}

/**
 * An array a model keeps, in a large buffer: `a` itself when it is in one already (a view on a
 * file read whole), small, or when no allocator is installed or it refuses; else a copy (a tensor
 * read lazily: the original is a plain array the GC frees as usual).
 */
export function keepLarge<T extends Float32Array | Uint16Array | Uint8Array>(a: T): T {
  if (a.byteLength < LARGE_BUFFER_MIN || !largeBuffersInstalled() || given.has(a.buffer)) return a;
  const b = largeBuffer(a.byteLength);
  if (!given.has(b)) return a;
  // by element type, not a.constructor (a Node Buffer is a Uint8Array whose constructor differs)
  const out = a instanceof Float32Array ? new Float32Array(b) : a instanceof Uint16Array ? new Uint16Array(b) : new Uint8Array(b);
  out.set(a);
  return out as T;
}
