// Tests for large buffers (core/buffers.ts): the policy (size threshold, fallback, the
// LLAMA_ADAPTER_HUGE_PAGES switch) against a counting allocator, and the native addon's
// hugeBuffer against what the kernel reports (/proc/self/smaps_rollup's AnonHugePages).
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { isLargeBuffer, keepLarge, LARGE_BUFFER_MIN, largeBuffer, largeBuffersInstalled, largeF32, setLargeBufferAllocator } from '../src/core/buffers.js';
import { writeHfModel } from '../src/formats/hf.js';
import { readModelFile } from '../src/formats/registry.js';
import { syntheticModelFile } from '../src/formats/synthetic.js';
import { useNativeBuffers } from '../src/backend/native.js';

/** The transparent-huge-page mode in brackets ("always", "madvise", "never"), or null off Linux. */
function thpMode(): string | null {
  try {
    return /\[(\w+)\]/.exec(fs.readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8'))?.[1] ?? null;
  } catch {
    return null;
  }
}

/** This process's anonymous memory on huge pages, in bytes. */
function anonHugeBytes(): number {
  const m = /AnonHugePages:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/smaps_rollup', 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

describe('large buffers: policy', () => {
  const saved = process.env.LLAMA_ADAPTER_HUGE_PAGES;
  after(() => {
    if (saved === undefined) delete process.env.LLAMA_ADAPTER_HUGE_PAGES;
    else process.env.LLAMA_ADAPTER_HUGE_PAGES = saved;
    useNativeBuffers(); // put the addon's allocator back if it had been installed
  });

  test('small requests never reach the allocator; large ones do; a refusal or a wrong size falls back to plain memory', () => {
    delete process.env.LLAMA_ADAPTER_HUGE_PAGES;
    const asked: number[] = [];
    let answer: 'ok' | 'refuse' | 'short' = 'ok';
    setLargeBufferAllocator((bytes) => {
      asked.push(bytes);
      if (answer === 'refuse') return undefined;
      return new ArrayBuffer(answer === 'short' ? bytes - 4 : bytes);
    });
    assert.equal(largeBuffer(LARGE_BUFFER_MIN - 1).byteLength, LARGE_BUFFER_MIN - 1);
    assert.deepEqual(asked, []);
    assert.equal(largeBuffer(LARGE_BUFFER_MIN).byteLength, LARGE_BUFFER_MIN);
    assert.equal(largeF32(LARGE_BUFFER_MIN).length, LARGE_BUFFER_MIN);
    assert.deepEqual(asked, [LARGE_BUFFER_MIN, 4 * LARGE_BUFFER_MIN]);
    answer = 'refuse';
    assert.equal(largeBuffer(3 * LARGE_BUFFER_MIN).byteLength, 3 * LARGE_BUFFER_MIN);
    answer = 'short';
    assert.equal(largeBuffer(3 * LARGE_BUFFER_MIN).byteLength, 3 * LARGE_BUFFER_MIN);
    assert.equal(asked.length, 4);
  });

  test('keepLarge copies a large plain array into a large buffer once, and leaves the rest alone', () => {
    delete process.env.LLAMA_ADAPTER_HUGE_PAGES;
    let refuse = false;
    setLargeBufferAllocator((bytes) => (refuse ? undefined : new ArrayBuffer(bytes)));
    const small = new Float32Array(16);
    assert.equal(keepLarge(small), small);
    const big = new Uint16Array(LARGE_BUFFER_MIN).map((_, i) => i);
    const kept = keepLarge(big);
    assert.notEqual(kept, big);
    assert.ok(kept instanceof Uint16Array && isLargeBuffer(kept.buffer));
    assert.deepEqual(kept, big);
    assert.equal(keepLarge(kept), kept, 'already in a large buffer: no second copy');
    refuse = true;
    const bytes = new Uint8Array(LARGE_BUFFER_MIN);
    assert.equal(keepLarge(bytes), bytes, 'the allocator refuses: the original is kept');
    setLargeBufferAllocator(null);
    assert.equal(keepLarge(big), big);
  });

  test('LLAMA_ADAPTER_HUGE_PAGES=0 turns the allocator off', () => {
    let calls = 0;
    setLargeBufferAllocator((bytes) => {
      calls++;
      return new ArrayBuffer(bytes);
    });
    process.env.LLAMA_ADAPTER_HUGE_PAGES = '0';
    assert.equal(largeBuffersInstalled(), false);
    assert.equal(largeBuffer(4 * LARGE_BUFFER_MIN).byteLength, 4 * LARGE_BUFFER_MIN);
    assert.equal(calls, 0);
    delete process.env.LLAMA_ADAPTER_HUGE_PAGES;
    assert.equal(largeBuffersInstalled(), true);
    largeBuffer(4 * LARGE_BUFFER_MIN);
    assert.equal(calls, 1);
    setLargeBufferAllocator(null);
    assert.equal(largeBuffersInstalled(), false);
  });
});

describe('large buffers: the native addon', () => {
  const native = useNativeBuffers();
  const skip = !native ? 'the native addon is not built (or is turned off)' : false;

  test('hugeBuffer memory is zeroed, exactly the size asked, and writable to its last byte', { skip }, () => {
    const bytes = 6 * LARGE_BUFFER_MIN + 12; // not a multiple of the page size
    const f = new Uint8Array(largeBuffer(bytes));
    assert.equal(f.length, bytes);
    for (let i = 0; i < bytes; i += 4093) assert.equal(f[i], 0);
    assert.equal(f[bytes - 1], 0);
    f[bytes - 1] = 7;
    f.fill(3, 0, 1 << 20);
    assert.equal(f[bytes - 1] + f[12345], 10);
  });

  test('dropped buffers are unmapped: 1.5 GB allocated and written 32 MB at a time, the event loop turning, raises the peak RSS by far less', {
    skip,
  }, async () => {
    const rss0 = process.resourceUsage().maxRSS * 1024;
    let sum = 0;
    for (let i = 0; i < 48; i++) {
      const f = new Uint8Array(largeBuffer(32 << 20));
      for (let j = 0; j < f.length; j += 4096) f[j] = 1; // every page made resident
      sum += f[f.length - 4096];
      await new Promise((r) => setImmediate(r)); // the GC collects between tasks (core/buffers.ts)
    }
    assert.equal(sum, 48);
    const grew = process.resourceUsage().maxRSS * 1024 - rss0;
    assert.ok(grew < 768 << 20, `peak RSS grew by ${(grew / 2 ** 20).toFixed(0)} MB`);
  });

  test('a model read lazily keeps its large matrices in large buffers, with the values of a whole read', { skip }, () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llama-buffers-'));
    try {
      // w1 / w3: 1536 x 512 fp32 = 3 MB each (over LARGE_BUFFER_MIN); the norms stay small
      const shape = { dim: 512, hiddenDim: 1536, nLayers: 1, nHeads: 8, nKvHeads: 8, vocabSize: 256 };
      const src = syntheticModelFile(shape, 3);
      writeHfModel(dir, src.config, src.weights);
      const lazy = readModelFile(dir, { lazy: true }).weights.layers[0];
      const whole = readModelFile(dir).weights.layers[0];
      for (const L of [lazy, whole]) assert.ok(isLargeBuffer(L.w1.data.buffer) && isLargeBuffer(L.w3.data.buffer));
      assert.ok(!isLargeBuffer(lazy.attnNorm.buffer), 'a small tensor read lazily stays a plain array');
      assert.deepEqual(lazy.w1.data, src.weights.layers[0].w1.data);
      assert.deepEqual(whole.w3.data, src.weights.layers[0].w3.data);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  const mode = thpMode();
  test('where transparent huge pages are "always" or "madvise", a large buffer faults in 2 MB pages', {
    skip: skip || (mode !== 'always' && mode !== 'madvise' ? `transparent huge pages: ${mode ?? 'not available'}` : false),
  }, () => {
    const before = anonHugeBytes();
    const f = largeF32((8 * LARGE_BUFFER_MIN) / 4); // 16 MB: eight 2 MB pages
    for (let i = 0; i < f.length; i += 1024) f[i] = i; // the first touch of every 4 KB
    const got = anonHugeBytes() - before;
    // Each fault may fall back to 4 KB pages when no free 2 MB page can be made; at least one must not.
    assert.ok(got >= LARGE_BUFFER_MIN, `AnonHugePages grew by ${got} bytes after touching 16 MB`);
    assert.equal(f[f.length - 1024], f.length - 1024);
  });
});
