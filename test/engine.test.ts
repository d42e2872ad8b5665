// The step-wise engine: a request's tokens depend only on the request. generateBatch of 8 prompts
// over 3 different adapters and none, in several row orders, gives every row the ids it gets
// alone; an engine that admits a request while 4 others are mid-decode and evicts one mid-stream
// leaves the others' tokens unchanged. Exact on the TypeScript backend; on the native backend
// with its batch-invariant matmul (a row's products then do not depend on the other rows).

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createAdapter, Engine, generateBatch, loadModel, type Adapter, type EngineEvent, type LlamaModel } from '../src/index.js';
import { setNativeFeature } from '../src/backend/native.js';
import { backendsUnderTest } from './backends.js';
import { tinystories656k } from './helpers.js';

const PROMPTS = ['Once upon a time', 'The dog', 'Lily saw a big red ball and', 'Tom', '', 'The sun was hot. The cat', 'One day, a little bird', 'Mom said'];
const OPTS = { temperature: 0.8, topP: 0.95, maxTokens: 16, stopTokens: [] as number[] };

for (const backend of backendsUnderTest()) {
  describe(`engine [${backend}]`, () => {
    let m: LlamaModel;
    let adapters: Adapter[];
    before(async () => {
      if (backend === 'native') assert.equal(setNativeFeature('batchInvariant', true), true);
      m = await loadModel(tinystories656k, { backend });
      // random-init gates: every adapter changes the model's output from the first step
      adapters = [
        createAdapter(m, { promptLength: 3, adapterLayers: 2, gateInit: 'random', seed: 1 }),
        createAdapter(m, { promptLength: 7, adapterLayers: 2, gate: 'raw-per-head', gateInit: 'random', seed: 2 }),
        createAdapter(m, { promptLength: 5, adapterLayers: 1, gate: 'raw-per-layer', gateInit: 'random', seed: 3 }),
      ];
    });
    after(() => {
      if (backend === 'native') setNativeFeature('batchInvariant', false);
    });

    it('generateBatch: 8 rows, 3 adapters and none, in any row order, give each row its ids alone', async () => {
      const rowAdapter = [adapters[0], null, adapters[1], adapters[0], adapters[2], null, adapters[1], adapters[2]];
      const seeds = PROMPTS.map((_, i) => 100 + i);
      const alone: number[][] = [];
      for (let i = 0; i < PROMPTS.length; i++) alone.push((await generateBatch(m, [PROMPTS[i]], { ...OPTS, seeds: [seeds[i]] }, [rowAdapter[i]]))[0].ids);
      // the adapters matter: a row's ids differ from the base model's for the same prompt and seed
      const base = (await generateBatch(m, [PROMPTS[0]], { ...OPTS, seeds: [seeds[0]] }))[0].ids;
      assert.notDeepEqual(alone[0], base);
      for (const order of [
        [0, 1, 2, 3, 4, 5, 6, 7],
        [7, 6, 5, 4, 3, 2, 1, 0],
        [3, 0, 6, 1, 4, 7, 2, 5],
      ]) {
        const got = await generateBatch(
          m,
          order.map((i) => PROMPTS[i]),
          { ...OPTS, seeds: order.map((i) => seeds[i]) },
          order.map((i) => rowAdapter[i]),
        );
        order.forEach((i, b) => assert.deepEqual(got[b].ids, alone[i], `order ${order}: row ${b} (prompt ${i})`));
      }
    });

    it('admitting a request while 4 decode and evicting one mid-stream leaves the others unchanged', () => {
      const enc = (s: string): number[] => m.tokenizer.encode(s, { bos: true });
      const req = (i: number) => ({
        ...OPTS,
        maxTokens: 20,
        prompt: enc(PROMPTS[i]),
        source: [adapters[0], null, adapters[1], adapters[2], adapters[1]][i],
        seed: 7 + i,
      });
      const drain = (_e: Engine, out: Map<number, number[]>, events: EngineEvent[]): void => {
        for (const ev of events) if (ev.piece) out.get(ev.slot)!.push(ev.piece.id);
      };
      /** Run requests alone, one engine each: the reference tokens. */
      const aloneIds = (i: number): number[] => {
        const e = new Engine(m, { slots: 1, prefillChunk: 4 });
        const out = new Map([[e.admit(req(i)), [] as number[]]]);
        while (e.active) drain(e, out, e.step());
        return out.get(0)!;
      };

      const e = new Engine(m, { slots: 6, prefillChunk: 4 });
      const ids = new Map<number, number[]>();
      const slotOf: number[] = [];
      for (let i = 0; i < 4; i++) {
        slotOf[i] = e.admit(req(i));
        ids.set(slotOf[i], []);
      }
      for (let s = 0; s < 8; s++) drain(e, ids, e.step()); // all four are decoding now
      for (let i = 0; i < 4; i++) assert.ok(ids.get(slotOf[i])!.length >= 3, `request ${i} is mid-decode`);
      slotOf[4] = e.admit(req(2 + 2)); // a long prompt (prefilled in chunks of 4 while the others decode)
      ids.set(slotOf[4], []);
      for (let s = 0; s < 3; s++) drain(e, ids, e.step());
      const evicted = ids.get(slotOf[1])!.length;
      assert.ok(evicted > 0 && evicted < 20, 'request 1 is evicted mid-stream');
      e.evict(slotOf[1]);
      assert.equal(e.busy(slotOf[1]), false);
      ids.delete(slotOf[1]);
      while (e.active) drain(e, ids, e.step());

      for (const i of [0, 2, 3, 4]) assert.deepEqual(ids.get(slotOf[i]), aloneIds(i), `request ${i}`);
      // the freed slot serves the next request, with the same result as alone
      const again = new Map([[e.admit(req(1)), [] as number[]]]);
      while (e.active) drain(e, again, e.step());
      assert.deepEqual([...again.values()][0], aloneIds(1));
    });

    it('prompts of one length admitted together share prefill forwards, each row still equal to its run alone', () => {
      // 6 prompts of 9 tokens (BOS + 8 ids) over 3 adapters and none; a step budget of 20 tokens: two
      // rows share a forward, then one more row runs alone in the same step
      const prompts = Array.from({ length: 6 }, (_, i) => [m.config.bosId, ...Array.from({ length: 8 }, (_, t) => 5 + ((i * 13 + t * 7) % 200))]);
      const source = [adapters[0], null, adapters[1], adapters[0], adapters[2], null];
      const req = (i: number) => ({ ...OPTS, maxTokens: 12, prompt: prompts[i], source: source[i], seed: 40 + i });
      const run = (idx: number[]): Map<number, number[]> => {
        const e = new Engine(m, { slots: idx.length, prefillChunk: 20 });
        const slotReq = new Map(idx.map((i) => [e.admit(req(i)), i]));
        const out = new Map(idx.map((i) => [i, [] as number[]]));
        while (e.active) for (const ev of e.step()) if (ev.piece) out.get(slotReq.get(ev.slot)!)!.push(ev.piece.id);
        return out;
      };
      const together = run([0, 1, 2, 3, 4, 5]);
      for (let i = 0; i < 6; i++) assert.deepEqual(together.get(i), run([i]).get(i), `prompt ${i}`);
    });

    it('engine errors name the problem', () => {
      const e = new Engine(m, { slots: 1 });
      e.admit({ prompt: [m.config.bosId] });
      assert.throws(() => e.admit({ prompt: [m.config.bosId] }), /all 1 slots are busy/);
      const f = new Engine(m, { slots: 1, contextLength: 8 });
      assert.throws(() => f.admit({ prompt: new Array(9).fill(1) }), /prompt of 9 tokens is longer than the engine's context of 8 tokens/);
      assert.throws(() => f.admit({ prompt: [m.config.vocabSize] }), /token id \d+ is outside the vocabulary/);
      assert.throws(() => new Engine(m, { slots: 0 }), /slots must be a positive integer/);
    });
  });
}
