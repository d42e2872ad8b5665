// Generation: the published greedy ids of stories260K (fp32 and int8 files), cached vs uncached
// decoding, batches vs single prompts, seeds, stop strings, streaming, context errors.

import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { Engine, loadModel, type GenerationPiece, type GenerationResult, type LlamaModel } from '../src/index.js';
import { argmax, Sampler } from '../src/generate/sampler.js';
import { backendsUnderTest } from './backends.js';
import { maxAbsDiff, stories260K, stories260Kq80, tinystories656k } from './helpers.js';
import { generate, generateBatch } from '../src/generate/generate.js';

// ../shared/assets/MANIFEST.md: greedy decoding of stories260K.bin from BOS, 40 steps
const MANIFEST_IDS = [
  1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337, 410, 408, 419, 292, 411, 322, 265, 282, 295, 433, 426,
  385, 328, 432, 358, 394, 261, 370, 432, 352,
];
const MANIFEST_TEXT = 'Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, r';

/** Greedy decoding without a KV cache: the whole sequence through forward() every step. */
function uncachedGreedy(m: LlamaModel, prompt: number[], n: number): number[] {
  const ids = [...prompt];
  const V = m.config.vocabSize;
  for (let i = 0; i < n; i++) {
    const logits = m.forward([ids]);
    ids.push(argmax(logits.subarray((ids.length - 1) * V), V));
  }
  return ids;
}

for (const backend of backendsUnderTest()) {
  describe(`generation [${backend}]`, () => {
    let m: LlamaModel;
    let tiny: LlamaModel;
    before(async () => {
      m = await loadModel(stories260K, { backend });
      tiny = await loadModel(tinystories656k, { backend });
    });

    it('greedy stories260K from BOS gives the MANIFEST ids and text (fp32 and int8 files)', async () => {
      const q = await loadModel(stories260Kq80, { backend });
      for (const model of [m, q]) {
        const [r] = await generateBatch(model, [''], { temperature: 0, maxTokens: 40 });
        assert.deepEqual([...r.promptIds, ...r.ids], MANIFEST_IDS);
        assert.equal(r.text, MANIFEST_TEXT);
      }
    });

    it('int8 (Q8_0) file gives logits within 1e-5 of the fp32 file', async () => {
      const q = await loadModel(stories260Kq80, { backend });
      const toks = [MANIFEST_IDS.slice(0, 30)];
      const d = maxAbsDiff(q.forward(toks), m.forward(toks));
      assert.ok(d < 1e-5, `max |diff| ${d}`);
    });

    it('cached and uncached greedy decoding give identical ids', async () => {
      for (const [model, prompt] of [
        [m, [1, 403, 407]],
        [tiny, tiny.tokenizer.encode('Tom had a red', { bos: true })],
      ] as const) {
        const [r] = await generateBatch(model, [prompt], { temperature: 0, maxTokens: 24, stopTokens: [] });
        assert.deepEqual([...r.promptIds, ...r.ids], uncachedGreedy(model, [...prompt], 24));
      }
    });

    it('a batch gives the same ids as each prompt alone (different lengths, sampled)', async () => {
      const prompts = ['Once upon a time', 'The dog', 'Lily wanted to play with her ball and'];
      const opts = { temperature: 0.9, topP: 0.9, maxTokens: 30, seed: 7 };
      const batch = await generateBatch(tiny, prompts, opts);
      for (let i = 0; i < prompts.length; i++) {
        // row i of a batch samples with seed + i
        const [alone] = await generateBatch(tiny, [prompts[i]], { ...opts, seed: 7 + i });
        assert.deepEqual(batch[i].ids, alone.ids, `row ${i}`);
      }
    });

    it('per-row seeds: a prompt samples the same ids in any batch row; bad seeds are refused', async () => {
      const opts = { temperature: 1, topK: 40, maxTokens: 30 };
      const [alone] = await generateBatch(tiny, ['The dog'], { ...opts, seeds: [42] });
      const batch = await generateBatch(tiny, ['Once upon a time', 'The dog'], { ...opts, seeds: [5, 42] });
      assert.deepEqual(batch[1].ids, alone.ids);
      const [other] = await generateBatch(tiny, ['The dog'], { ...opts, seeds: [43] });
      assert.notDeepEqual(other.ids, alone.ids);
      await assert.rejects(generateBatch(tiny, ['a', 'b'], { ...opts, seeds: [1] }), /1 seeds for 2 prompts/);
      await assert.rejects(generateBatch(tiny, ['a'], { ...opts, seeds: [1.5] }), /seed 1.5 is not an integer/);
    });

    it('same seed gives the same text; another seed another text', async () => {
      const o = { temperature: 1, topK: 40, maxTokens: 40 };
      const [a] = await generateBatch(tiny, ['Once upon a time'], { ...o, seed: 1 });
      const [b] = await generateBatch(tiny, ['Once upon a time'], { ...o, seed: 1 });
      const [c] = await generateBatch(tiny, ['Once upon a time'], { ...o, seed: 2 });
      assert.equal(a.text, b.text);
      assert.notEqual(a.text, c.text);
    });

    it('streamed pieces concatenate to the final text; stop strings cut the text', async () => {
      const it = generate(tiny, 'Once upon a time', { temperature: 0, maxTokens: 60, stopTokens: [] });
      let streamed = '';
      let final: GenerationResult | undefined;
      for (;;) {
        const r = await it.next();
        if (r.done) {
          final = r.value;
          break;
        }
        streamed += r.value.text;
      }
      assert.equal(streamed, final.text);
      const word = final.text.trim().split(/\s+/)[3];
      const [s] = await generateBatch(tiny, ['Once upon a time'], { temperature: 0, maxTokens: 60, stopTokens: [], stop: [word] });
      assert.equal(s.finishReason, 'stop');
      assert.equal(s.text, final.text.slice(0, final.text.indexOf(word)));
    });

    it('a prompt longer than the context is a clear error', async () => {
      const long = new Array<number>(m.config.maxSeqLen + 1).fill(400);
      await assert.rejects(generateBatch(m, [long], { maxTokens: 1 }), /longer than the model's context of 512/);
      assert.throws(() => m.forward([long]), /longer than the model's context/);
    });
  });
}

describe('sampling penalties and log-probabilities', () => {
  it("presence and frequency penalties follow OpenAI's formula: logit - presence - count * frequency", () => {
    const pick = (o: { presencePenalty?: number; frequencyPenalty?: number }, counts: Map<number, number>): number =>
      new Sampler(3, { temperature: 0, ...o }).sample(Float32Array.of(2, 1.5, 0), [], counts);
    const once = new Map([[0, 1]]);
    const thrice = new Map([[0, 3]]);
    assert.equal(pick({ presencePenalty: 0.4 }, once), 0); // 1.6 > 1.5
    assert.equal(pick({ presencePenalty: 0.6 }, once), 1); // 1.4 < 1.5
    assert.equal(pick({ frequencyPenalty: 0.1 }, thrice), 0); // 1.7
    assert.equal(pick({ frequencyPenalty: 0.2 }, thrice), 1); // 1.4
    assert.equal(pick({ presencePenalty: -1 }, new Map([[1, 1]])), 1); // a negative penalty favours the token: 2.5
  });

  it("a piece's log-probabilities are the log-softmax of forward()'s logits, before penalties", async () => {
    const m = await loadModel(stories260K, { backend: 'ts' });
    const prompt = [m.config.bosId, 403, 407];
    const e = new Engine(m, { slots: 1 });
    e.admit({ prompt, temperature: 0, maxTokens: 1, logprobs: 3, presencePenalty: 2, frequencyPenalty: 2 });
    let piece: GenerationPiece | null = null;
    while (e.active) for (const ev of e.step()) piece ??= ev.piece;
    const V = m.config.vocabSize;
    const row = m.forward([prompt]).subarray(2 * V, 3 * V);
    const max = Math.max(...row);
    const lse = max + Math.log(row.reduce((a, x) => a + Math.exp(x - max), 0));
    const order = [...row.keys()].sort((a, b) => row[b] - row[a]);
    assert.ok(piece?.logprob);
    assert.equal(piece.logprob.id, order[0]);
    assert.ok(Math.abs(piece.logprob.logprob - (row[order[0]] - lse)) < 1e-5);
    assert.deepEqual(
      piece.logprob.top.map((t) => t.id),
      order.slice(0, 3),
    );
    for (const t of piece.logprob.top) assert.ok(Math.abs(t.logprob - (row[t.id] - lse)) < 1e-5);
  });
});
