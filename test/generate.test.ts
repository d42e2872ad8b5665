// Generation: the published greedy ids of stories260K (fp32 and int8 files), cached vs uncached
// decoding, batches vs single prompts, seeds, stop strings, streaming, context errors.

import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { loadModel, type GenerationResult, type LlamaModel } from '../src/index.js';
import { argmax } from '../src/generate/sampler.js';
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
