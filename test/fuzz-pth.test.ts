// 100,000 mutated PyTorch files through the .pth reader (zip + restricted pickle VM) and the
// official / litgpt adapter readers, in memory: 0 crashes (every failure a LlamaAdapterError naming
// the file), 0 hangs (every mutant answers within a second; a real infinite loop would time the
// test out). Seeds: files torch.save wrote (test/python/interop_fixtures.py: official v1, litgpt's
// {"model": ...}, PEFT's adapter_model.bin, a pickle with os.system) and one our writer wrote.
// Three streams per seed: the whole file mutated (mostly zip structure and headers), data.pkl
// mutated and re-zipped with valid CRCs (the pickle VM sees every mutant), and the zip's central
// directory and end record mutated.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, it } from 'node:test';
import { LlamaAdapterError } from '../src/core/errors.js';
import { parseTorchFile } from '../src/core/pth.js';
import { Rng } from '../src/core/rng.js';
import { ZipArchive, zipStored } from '../src/core/zip.js';
import { isLitgpt, readLitgpt } from '../src/methods/v1/interop/litgpt.js';
import { isOfficial, readOfficial } from '../src/methods/v1/interop/official.js';
import { torchSource } from '../src/methods/v1/interop/source.js';
import { writeAdapterAs } from '../src/methods/v1/interop/registry.js';
import { mutate } from './fuzz.js';
import { repoRoot, shared } from './helpers.js';

const TOTAL = 100_000;
const tmp = fs.mkdtempSync(path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'llama-adapter-fuzz-pth-')); // tmpfs: cheap opens
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Read bytes as a .pth adapter the way loadAdapter does, without a model. */
function readAll(name: string, bytes: Uint8Array): void {
  const src = torchSource(parseTorchFile(name, bytes));
  if (isOfficial(src)) readOfficial(src, {});
  else if (isLitgpt(src)) readLitgpt(src, {});
  else for (const n of src.names()) src.f32(n);
}

/** The tail mutator: bit flips and field overwrites in the last 256 bytes (central directory and end record). */
function mutateTail(src: Uint8Array, seed: number, i: number): Uint8Array {
  const rng = new Rng((seed * 7919 + i * 104729 + 31) >>> 0);
  const out = new Uint8Array(src);
  const from = Math.max(0, src.length - 256);
  for (let k = 0, n = 1 + rng.int(3); k < n; k++) {
    const p = from + rng.int(src.length - from);
    if (rng.uniform() < 0.5) out[p] ^= 1 << rng.int(8);
    else out[p] = [0, 0xff, 0x7f, 0x80, rng.int(256)][rng.int(5)];
  }
  return out;
}

/** data.pkl mutated, the archive rebuilt around it (valid CRCs). */
function mutatePickle(src: Uint8Array, seed: number, i: number): Uint8Array {
  const zip = new ZipArchive('seed', src);
  return zipStored(
    zip.names().map((n) => ({ name: n, data: n.endsWith('data.pkl') ? mutate({ original: zip.read(n).slice(), json: null }, seed, i) : zip.read(n) })),
  );
}

it(`${TOTAL} mutated .pth / zip / pickle inputs: 0 crashes, 0 hangs, every failure a clear error`, { timeout: 300_000 }, (t) => {
  const fx = path.join(tmp, 'fx');
  const r = spawnSync(
    '/usr/bin/python3',
    [path.join(repoRoot, 'test/python/interop_fixtures.py'), 'make', fx, path.join(shared, 'reference'), path.join(shared, 'assets')],
    {
      encoding: 'utf8',
    },
  );
  assert.equal(r.status, 0, r.stderr);
  const ours = path.join(tmp, 'ours.pth');
  writeAdapterAs(
    {
      format: 'llama-adapter',
      path: 'mem',
      promptLength: 2,
      dim: 4,
      layers: [1],
      baseLayers: 2,
      heads: 2,
      kvHeads: 2,
      prompts: [new Float32Array(8).fill(0.5)],
      gates: [new Float32Array([0.1, -0.2])],
      gate: 'tanh-per-head',
      gateChoice: 'file',
      promptProjection: 'standard',
      dtype: 'F32',
      notes: [],
      metadata: {},
    },
    'official',
    ours,
  );
  const seeds = [
    path.join(fx, 'tinystories656k/official.pth'),
    path.join(fx, 'stories260K/official-scalar.pth'),
    path.join(fx, 'tinystories656k/litgpt/lit_model.pth.adapter'),
    path.join(fx, 'stories260K/peft-bin/adapter_model.bin'),
    path.join(fx, 'evil.pth'),
    ours,
  ].map((f) => new Uint8Array(fs.readFileSync(f)));
  const streams = [
    (s: Uint8Array, i: number) => mutate({ original: s, json: null }, 12, i),
    (s: Uint8Array, i: number) => mutatePickle(s, 12, i),
    (s: Uint8Array, i: number) => mutateTail(s, 12, i),
  ];
  const name = '/fuzz/mutant.pth';
  const counts = { loaded: 0, refused: 0 };
  const crashes: string[] = [];
  const unnamed: string[] = [];
  let slowest = 0;
  for (let i = 0; i < TOTAL; i++) {
    const bytes = streams[i % 3](seeds[Math.floor(i / 3) % seeds.length], i);
    const t0 = performance.now();
    try {
      readAll(name, bytes);
      counts.loaded++;
    } catch (e) {
      if (!(e instanceof LlamaAdapterError)) crashes.push(`mutant ${i}: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
      else if (!e.message.includes(name)) unnamed.push(`mutant ${i}: ${e.message}`);
      else counts.refused++;
    }
    slowest = Math.max(slowest, performance.now() - t0);
  }
  t.diagnostic(`pth fuzz: ${TOTAL} mutants, ${counts.refused} refused, ${counts.loaded} read, ${crashes.length} crashes, slowest ${slowest.toFixed(1)} ms`);
  assert.equal(crashes.length, 0, crashes.slice(0, 5).join('\n'));
  assert.equal(unnamed.length, 0, unnamed.slice(0, 5).join('\n'));
  assert.ok(slowest < 1000, `a mutant took ${slowest} ms`);
  assert.ok(counts.refused > TOTAL / 2, `only ${counts.refused} refused`);
});
