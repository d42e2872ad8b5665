// The WebGPU backend beyond the conformance suite (which runs its kernels against the oracle in
// the form its adapter defaults to): the other kernel form (tiled GEMM and attention, the GPU form;
// SwiftShader defaults to the direct one) against the oracle, the device memory's contract (host
// writes seen or announced, copies, views, sync), and the model, engine and training loop on it
// against the TypeScript backend (same greedy ids over mixed adapters, same training losses, an
// adapter trained on the device giving the same logits on the host; the engine's asynchronous
// steps with an eviction between them; the server on the device). Runs where a WebGPU adapter
// starts: SwiftShader from Debian's chromium package where there is no GPU (scripts/setup.sh).

import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { AttnShape } from '../src/backend/backend.js';
import { getBackendAsync } from '../src/backend/index.js';
import { createTsBackend } from '../src/backend/ts/index.js';
import { loadWebGpuBackend, type WebGpuBackend } from '../src/backend/webgpu/index.js';
import { Rng } from '../src/core/rng.js';
import { toBf16, type Matrix } from '../src/core/weights.js';
import { createAdapter, createServer, Engine, generateBatch, loadAdapter, loadModel, type LlamaModel } from '../src/index.js';
import { finetune } from '../src/train/finetune.js';
import { maxAbs, maxAbsDiff, tinystories656k } from './helpers.js';

const loaded = await loadWebGpuBackend(true);
const skip = loaded.backend ? false : `no WebGPU adapter: ${loaded.error}`;
const ts = createTsBackend();

function randn(rng: Rng, n: number, scale = 1): Float32Array {
  return Float32Array.from({ length: n }, () => rng.normal() * scale);
}

/** Normwise closeness, as the conformance suite's. */
function close(a: Float32Array, b: Float32Array, rtol: number, what: string): void {
  const err = maxAbsDiff(a, b);
  assert.ok(err <= rtol * maxAbs(b) + 1e-6, `${what}: max error ${err} > ${rtol} x ${maxAbs(b)}`);
}

describe('webgpu backend', { skip }, () => {
  const be = loaded.backend as WebGpuBackend;
  const rng = new Rng(99);

  // (each tiled pipeline takes about a second to compile under SwiftShader: one shape, f32; the bf16
  // loads are the direct form's, which the conformance suite runs)
  it('the tiled kernel form (the GPU one) matches the oracle: GEMM both ways, attention and its backward', async () => {
    const form = be.form;
    be.form = 'tiled';
    try {
      for (const [M, N, K] of [[65, 20, 130]])
        for (const dtype of ['f32'] as const) {
          const f = randn(rng, N * K, 0.5);
          const w: Matrix = dtype === 'f32' ? { dtype, rows: N, cols: K, data: f } : { dtype, rows: N, cols: K, data: toBf16(f) };
          const x = randn(rng, M * K),
            dy = randn(rng, M * N);
          const [o1, o2, b1, b2] = [new Float32Array(M * N), new Float32Array(M * N), randn(rng, M * K), new Float32Array(M * K)];
          b2.set(b1);
          ts.matmul(o1, x, w, M);
          be.matmul(o2, x, w, M);
          ts.matmulBack(b1, dy, w, M, true);
          be.matmulBack(b2, dy, w, M, true);
          await be.memory.sync(o2, b2);
          close(o2, o1, 2e-5, `tiled matmul ${dtype} ${M}x${N}x${K}`);
          close(b2, b1, 2e-5, `tiled matmulBack ${dtype} ${M}x${N}x${K}`);
        }
      const s: AttnShape = { B: 2, T: 70, S: 70, H: 4, Hkv: 2, hs: 8 }; // two query tiles, GQA
      const q = randn(rng, 2 * 70 * 4 * 8),
        k = randn(rng, 2 * 70 * 2 * 8),
        v = randn(rng, k.length),
        dout = randn(rng, q.length);
      const pos = new Int32Array(2);
      const [oW, oG] = [new Float32Array(q.length), new Float32Array(q.length)];
      ts.attention(oW, q, k, v, pos, s);
      be.attention(oG, q, k, v, pos, s);
      const want = [new Float32Array(q.length), new Float32Array(k.length), new Float32Array(k.length)];
      const got = [new Float32Array(q.length), new Float32Array(k.length), new Float32Array(k.length)];
      ts.attentionBack(want[0], want[1], want[2], dout, q, k, v, s);
      be.attentionBack(got[0], got[1], got[2], dout, q, k, v, s);
      await be.memory.sync(oG, ...got);
      close(oG, oW, 1e-5, 'tiled attention');
      ['dq', 'dk', 'dv'].forEach((n, i) => close(got[i], want[i], 1e-5, `tiled attentionBack ${n}`));
    } finally {
      be.form = form;
    }
  });

  it('device memory: host writes to arrays no kernel wrote are seen; to ones a kernel wrote, after upload(); views and copies', async () => {
    const m = be.memory;
    const x = new Float32Array(8).fill(1),
      y = Float32Array.from({ length: 8 }, (_, i) => i);
    be.add(x, y, 8);
    await m.sync(x);
    assert.deepEqual([...x], [1, 2, 3, 4, 5, 6, 7, 8]);
    y[0] = 100; // y was never written by a kernel: the next kernel sees this
    be.add(x, y, 8);
    await m.sync(x);
    assert.equal(x[0], 101);
    x[1] = -5; // x was written by a kernel: the device copy stays the truth until upload()
    be.add(x, y, 1);
    await m.sync(x);
    assert.equal(x[1], 3, 'a host write without upload() is not seen (sync brings back the device copy, 3)');
    x[1] = -5;
    m.upload(x);
    be.add(x.subarray(1), y.subarray(1), 1); // a view: element 1 of both
    await m.sync(x);
    assert.equal(x[1], -4);
    // copy / fill / gather / scatter against the host implementations
    const src = Float32Array.from({ length: 12 }, (_, i) => i + 0.5),
      dst = new Float32Array(12);
    be.add(dst, src, 12); // dst now lives on the device
    m.copy(dst, 1, src, 6, 3);
    m.fill(dst, 7, 8, 2);
    m.fill(dst, 0, 10, 2);
    await m.sync(dst);
    assert.deepEqual([...dst], [0.5, 6.5, 7.5, 8.5, 4.5, 5.5, 6.5, 7.5, 7, 7, 0, 0]);
    const rows = Int32Array.of(2, 0),
      g = new Float32Array(6),
      sc = new Float32Array(9).fill(-1);
    m.gather(g, src, rows, 2, 3);
    be.add(sc, new Float32Array(9), 9);
    m.scatter(sc, g, Int32Array.of(1, 2), 2, 3);
    await m.sync(g, sc);
    assert.deepEqual([...g], [6.5, 7.5, 8.5, 0.5, 1.5, 2.5]);
    assert.deepEqual([...sc], [-1, -1, -1, 6.5, 7.5, 8.5, 0.5, 1.5, 2.5]);
    assert.throws(() => m.gather(g, src, Int32Array.of(4), 1, 3), RangeError);
    m.copy(dst, 0, dst, 6, 3); // one buffer at both ends: a shader copy
    await m.sync(dst);
    assert.deepEqual([...dst.subarray(0, 3)], [6.5, 7.5, 7]);
  });

  describe('the model on webgpu against the TypeScript backend (tinystories-656k)', () => {
    let gpu: LlamaModel, host: LlamaModel;
    before(async () => {
      gpu = await loadModel(tinystories656k, { backend: 'webgpu' });
      host = await loadModel(tinystories656k, { backend: 'ts' });
    });

    it("the synchronous API refuses clearly; 'auto' never takes SwiftShader", async () => {
      assert.throws(() => gpu.forward([[1, 2]]), /computes on a device, asynchronously: use forwardAsync\(\)/);
      if (be.software) assert.notEqual((await getBackendAsync('auto')).name, 'webgpu');
    });

    it('greedy decoding of three rows over two adapters and none, in one batch, gives the TypeScript backend ids', async () => {
      const ids = async (m: LlamaModel): Promise<number[][]> => {
        const a = createAdapter(m, { promptLength: 4, adapterLayers: 2, gateInit: 'random', seed: 3 });
        const b = createAdapter(m, { promptLength: 4, adapterLayers: 1, gateInit: 'random', seed: 4 });
        const r = await generateBatch(m, ['Once upon a time', 'The cat', 'Tom had a'], { temperature: 0, maxTokens: 12 }, [a, null, b]);
        return r.map((x) => x.ids);
      };
      assert.deepEqual(await ids(gpu), await ids(host));
    });

    it('finetune on the device: the losses follow the host run and go down; the saved adapter gives the host logits within 1e-4', async () => {
      const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'llama-adapter-webgpu-'));
      try {
        const data = Array.from({ length: 24 }, (_, i) => ({
          instruction: `Write a story about ${['Tom', 'Lily', 'Sue'][i % 3]}.`,
          input: '',
          output: `${['Tom', 'Lily', 'Sue'][i % 3]} went to the park and played with a ball.`,
        }));
        const run = (model: LlamaModel, out: string) =>
          finetune({
            model,
            data,
            out: path.join(tmp, out),
            promptLength: 4,
            adapterLayers: 2,
            epochs: 1,
            batchSize: 4,
            lr: 0.05,
            warmupSteps: 0,
            valSize: 4,
            promptStyle: 'plain',
            metrics: null,
            plot: null,
          });
        const [g, h] = [await run(gpu, 'g.safetensors'), await run(host, 'h.safetensors')];
        assert.equal(g.losses.length, 5);
        for (let i = 0; i < g.losses.length; i++)
          assert.ok(Math.abs(g.losses[i] - h.losses[i]) < 1e-3 * h.losses[i], `step ${i + 1}: ${g.losses[i]} vs ${h.losses[i]}`);
        assert.ok(g.losses[4] < g.losses[0], `loss went ${g.losses[0]} -> ${g.losses[4]}`);
        const onHost = loadAdapter(path.join(tmp, 'g.safetensors'), host);
        const tokens = [host.tokenizer.encode('Write a story about Tom.', { bos: true })];
        const want = await gpu.forwardAsync(tokens, { adapter: g.adapter });
        assert.ok(maxAbsDiff(host.forward(tokens, { adapter: onHost }), want) < 1e-4);
        // parameters written on the host after training on the device, then invalidate(): the device sees them
        for (const [k, p] of g.adapter.parameters())
          p.set(
            onHost
              .parameters()
              .get(k)!
              .map((x) => x * 0.5),
          );
        g.adapter.invalidate();
        for (const p of onHost.parameters().values()) p.set(p.map((x) => x * 0.5));
        onHost.invalidate();
        assert.ok(maxAbsDiff(host.forward(tokens, { adapter: onHost }), await gpu.forwardAsync(tokens, { adapter: g.adapter })) < 1e-4);
      } finally {
        fs.rmSync(tmp, { recursive: true, force: true });
      }
    });

    it('the engine steps asynchronously: a request evicted while a step waits on the device is freed when it ends, the other goes on', async () => {
      const engine = new Engine(gpu, { slots: 2, contextLength: 64 });
      const prompt = gpu.tokenizer.encode('Once upon a time', { bos: true });
      const a = engine.admit({ prompt, temperature: 0, maxTokens: 6 }),
        b = engine.admit({ prompt, temperature: 0, maxTokens: 6 });
      const pending = engine.stepAsync();
      engine.evict(b); // while the prefill waits for its logits
      assert.ok(engine.busy(b), 'the slot stays taken until the step ends');
      const ids: number[] = [];
      const take = (events: Awaited<typeof pending>): void => {
        for (const e of events) if (e.slot === a && e.piece && e.piece.id >= 0) ids.push(e.piece.id);
      };
      take(await pending);
      assert.ok(!engine.busy(b) && engine.busy(a));
      while (engine.busy(a)) take(await engine.stepAsync());
      const [want] = await generateBatch(host, [prompt], { temperature: 0, maxTokens: 6 });
      assert.deepEqual(ids, want.ids);
    });

    it("serves over HTTP from the device: a greedy completion is the host backend's text", async () => {
      const server = createServer(gpu, { modelPath: tinystories656k, ui: false });
      try {
        const url = await server.listen('127.0.0.1', 0);
        const body = { model: 'tinystories-656k', prompt: 'Once upon a time', max_tokens: 16, temperature: 0 };
        const r = (await (
          await fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
        ).json()) as {
          choices: { text: string }[];
        };
        const [want] = await generateBatch(host, ['Once upon a time'], { temperature: 0, maxTokens: 16 });
        assert.equal(r.choices[0].text, want.text);
      } finally {
        await server.close();
      }
    });

    it('refuses quantized weights by name when asked for webgpu; auto takes a host backend for them', async () => {
      await assert.rejects(loadModel(tinystories656k, { backend: 'webgpu', dtype: 'q8_0' }), /webgpu backend has no kernels for quantized \(q8_0\) weights/);
      const m = await loadModel(tinystories656k, { backend: 'auto', dtype: 'q8_0' });
      assert.notEqual(m.backend.name, 'webgpu');
    });
  });
});
