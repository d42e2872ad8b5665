// Training: data formats and their errors, the paper's templates byte for byte, loss masking,
// AdamW against a hand computation, the schedule, exact resume, and loss going down on the
// real Alpaca-format files.

import { after, describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createAdapter, loadModel, type LlamaModel } from '../src/index.js';
import { LlamaModel as Model } from '../src/model/model.js';
import { matrixToF32 } from '../src/core/quant.js';
import type { Matrix, ModelWeights } from '../src/core/weights.js';
import { finetune, readInstructionData, type FinetuneOptions } from '../src/train/finetune.js';
import { IGNORE, padBatch, tokenizeExample } from '../src/train/data.js';
import { PROMPT_STYLES } from '../src/train/prompt-styles.js';
import { learningRate, peakLearningRate } from '../src/train/schedule.js';
import { createTsBackend } from '../src/backend/ts/index.js';
import { AdamW } from '../src/train/optimizer.js';
import { assets, stories260K, tinystories656k } from './helpers.js';
import { backendsUnderTest } from './backends.js';
import { Adapter } from '../src/methods/v1/adapter.js';
import { readAdapterInfo } from '../src/methods/v1/file.js';
import { readSafetensors } from '../src/core/safetensors.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'llama-adapter-train-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
const alpaca = path.join(assets, 'data/instruct/litgpt_fixtures/alpaca.json');
const dolly = path.join(assets, 'data/instruct/litgpt_fixtures/dolly.json');
const seedTasks = path.join(assets, 'data/instruct/alpaca_seed/seed_tasks.jsonl');

/** Adapter training on the real Alpaca file (K=10, L=2, lr 3e-2, batch 4): the result, its first loss and the mean of its last three. */
async function alpacaRun(model: LlamaModel, out: string, epochs: number, extra: Partial<FinetuneOptions> = {}) {
  const r = await finetune({
    model,
    data: alpaca,
    out,
    promptLength: 10,
    adapterLayers: 2,
    epochs,
    batchSize: 4,
    lr: 3e-2,
    warmupSteps: 2,
    maxSeqLen: 128,
    valSize: 3,
    seed: 0,
    overwrite: true,
    ...extra,
  });
  return { r, first: r.losses[0], last: r.losses.slice(-3).reduce((a, b) => a + b, 0) / 3 };
}

describe('instruction data', () => {
  it('reads Alpaca JSON, Dolly field names and Self-Instruct JSONL', () => {
    const a = readInstructionData(alpaca);
    assert.equal(a.length, 23);
    assert.equal(a[0].instruction, 'Give three tips for staying healthy.');
    const d = readInstructionData(dolly);
    assert.equal(d.length, 12);
    assert.match(d[0].input, /^Virgin Australia/);
    assert.ok(d[0].output.length > 0);
    const s = readInstructionData(seedTasks);
    assert.equal(s.length, 175);
    assert.ok(s.every((r) => r.output.length > 0));
  });

  it('a malformed record names the file and the record/line', () => {
    const j = path.join(tmp, 'bad.json');
    fs.writeFileSync(j, JSON.stringify([{ instruction: 'a', output: 'b' }, { instruction: 'c' }]));
    assert.throws(() => readInstructionData(j), /bad\.json: record 2: missing field "output"/); // 1-based, like JSONL lines
    const l = path.join(tmp, 'bad.jsonl');
    fs.writeFileSync(l, '{"instruction":"a","output":"b"}\n{"instruction": 3, "output": "x"}\n');
    assert.throws(() => readInstructionData(l), /bad\.jsonl: line 2: field "instruction" must be a string/);
    fs.writeFileSync(l, '{"instruction":"a","output":"b"}\n{oops\n');
    assert.throws(() => readInstructionData(l), /bad\.jsonl: line 2, column 2: invalid JSON/);
    // a JSON array's syntax error: the line and column where JSON.parse stopped
    fs.writeFileSync(j, '[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "c" "output": "d"}\n]');
    assert.throws(() => readInstructionData(j), /bad\.json: line 3, column 23: invalid JSON/);
    // chat records: the role that is wrong, by message index
    fs.writeFileSync(l, '{"messages": [{"role": "user", "content": "hi"}, {"role": "user", "content": "again"}]}\n');
    assert.throws(() => readInstructionData(l), /bad\.jsonl: line 1: messages\[1\]\.role is "user", expected "assistant"/);
  });

  it("chat records (OpenAI's fine-tuning format): the last user message is the instruction, the assistant's answer the output", () => {
    const l = path.join(tmp, 'chat.jsonl');
    const chat = (...m: [string, unknown][]) => JSON.stringify({ messages: m.map(([role, content]) => ({ role, content })) });
    fs.writeFileSync(
      l,
      `${chat(['user', 'Tell a story'], ['assistant', 'Once'])}\n${chat(
        ['system', 'Be brief'],
        ['user', 'old'],
        ['assistant', 'x'],
        ['user', 'Name a color'],
        ['assistant', [{ type: 'text', text: 'Red' }]],
      )}\n`,
    );
    assert.deepEqual(readInstructionData(l), [
      { instruction: 'Tell a story', input: '', output: 'Once' },
      { instruction: 'Name a color', input: '', output: 'Red' },
    ]);
  });

  it('a UTF-8 BOM and CRLF line endings read as the same records', () => {
    const recs = [
      { instruction: 'a', output: 'b' },
      { instruction: 'c', input: 'd', output: 'e' },
    ];
    const plainL = path.join(tmp, 'plain.jsonl');
    fs.writeFileSync(plainL, recs.map((r) => JSON.stringify(r)).join('\n'));
    const want = readInstructionData(plainL);
    const bomL = path.join(tmp, 'bom.jsonl');
    fs.writeFileSync(bomL, `\ufeff${recs.map((r) => JSON.stringify(r)).join('\r\n')}\r\n`);
    assert.deepEqual(readInstructionData(bomL), want);
    const bomJ = path.join(tmp, 'bom.json');
    fs.writeFileSync(bomJ, `\ufeff${JSON.stringify(recs, null, 1).replaceAll('\n', '\r\n')}`);
    assert.deepEqual(readInstructionData(bomJ), want);
    fs.writeFileSync(bomL, '\ufeff{"instruction":"a","output":"b"}\r\n{oops\r\n');
    assert.throws(() => readInstructionData(bomL), /bom\.jsonl: line 2, column 2: invalid JSON/);
  });

  it("alpaca templates are the paper's, byte for byte", () => {
    assert.equal(
      PROMPT_STYLES.alpaca.prompt({ instruction: 'I', input: '' }),
      'Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\nI\n\n### Response:',
    );
    assert.equal(
      PROMPT_STYLES.alpaca.prompt({ instruction: 'I $1', input: 'X' }),
      'Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request.\n\n### Instruction:\nI $1\n\n### Input:\nX\n\n### Response:',
    );
  });

  it('BOS + prompt + output + EOS with loss on output and EOS only; truncation; padding', async () => {
    const m = await loadModel(tinystories656k, { backend: 'ts' });
    const tok = m.tokenizer;
    const r = { instruction: 'Write a story about Tom.', input: '', output: ' Tom had a dog.' };
    const ex = tokenizeExample(tok, r, 'plain', 512);
    const promptIds = tok.encode(PROMPT_STYLES.plain.prompt(r), { bos: true });
    assert.equal(ex.tokens[0], tok.bosId);
    assert.equal(ex.tokens[ex.tokens.length - 1], tok.eosId);
    assert.deepEqual(ex.tokens.slice(0, promptIds.length), promptIds);
    // targets: ignore until the last prompt position, then the next token; nothing after EOS
    ex.targets.forEach((y, t) => assert.equal(y, t + 1 >= promptIds.length && t + 1 < ex.tokens.length ? ex.tokens[t + 1] : IGNORE));
    assert.equal(tok.decode(ex.tokens.slice(promptIds.length)), 'Tom had a dog.');
    const short = tokenizeExample(tok, r, 'plain', 5);
    assert.equal(short.tokens.length, 5);
    const b = padBatch([ex, short], 0);
    assert.equal(b.T, ex.tokens.length);
    assert.deepEqual(b.targets[1].slice(5), new Array(b.T - 5).fill(IGNORE));
  });
});

describe('optimizer and schedule', () => {
  it('AdamW matches a hand computation; no weight decay on gates', () => {
    const p = new Map([
      ['layers.0.adaption_prompt', Float32Array.from([1, -2])],
      ['layers.0.adaption_gate', Float32Array.from([0.5])],
    ]);
    const shapes = new Map([
      ['layers.0.adaption_prompt', [1, 2]],
      ['layers.0.adaption_gate', [1]],
    ]);
    const opt = new AdamW(p, shapes, { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 });
    const g = new Map([
      ['layers.0.adaption_prompt', Float32Array.from([0.1, 0.2])],
      ['layers.0.adaption_gate', Float32Array.from([-0.3])],
    ]);
    opt.update(createTsBackend(), g, 0.01);
    // step 1: m_hat = g, v_hat = g^2 -> update = sign(g) (up to eps); decay lr*wd*p on matrices
    assert.ok(Math.abs(p.get('layers.0.adaption_prompt')![0] - (1 - 0.01 * (1 + 0.1 * 1))) < 1e-6);
    assert.ok(Math.abs(p.get('layers.0.adaption_prompt')![1] - (-2 - 0.01 * (1 + 0.1 * -2))) < 1e-6);
    assert.ok(Math.abs(p.get('layers.0.adaption_gate')![0] - (0.5 + 0.01)) < 1e-6);
  });

  it('warmup then half-cycle cosine; blr scaling', () => {
    const s = { peakLr: 1, minLr: 0, totalSteps: 10, warmupSteps: 2 };
    assert.equal(learningRate(s, 0), 0);
    assert.equal(learningRate(s, 1), 0.5);
    assert.equal(learningRate(s, 2), 1);
    assert.ok(Math.abs(learningRate(s, 6) - 0.5) < 1e-12);
    assert.ok(learningRate(s, 10) < 1e-12);
    assert.equal(peakLearningRate({ blr: 9e-3, effectiveBatch: 32 }), 1.125e-3);
  });
});

describe('adapter training on a quantized base (frozen blocks in forward and in the input gradients)', () => {
  /** tinystories-656k as Q8_0 on `backend`, and the same values dequantized into f32 matrices. */
  const models = async (backend: 'ts' | 'native'): Promise<{ q: LlamaModel; f: LlamaModel }> => {
    const q = await loadModel(tinystories656k, { backend, dtype: 'q8_0' });
    const deq = (m: Matrix): Matrix => ({ dtype: 'f32', rows: m.rows, cols: m.cols, data: matrixToF32(m) });
    const w = q.weights;
    const weights: ModelWeights = {
      tokEmbd: deq(w.tokEmbd),
      outputNorm: w.outputNorm,
      output: w.output === w.tokEmbd ? (undefined as unknown as Matrix) : deq(w.output),
      layers: w.layers.map((l) => ({ ...l, wq: deq(l.wq), wk: deq(l.wk), wv: deq(l.wv), wo: deq(l.wo), w1: deq(l.w1), w2: deq(l.w2), w3: deq(l.w3) })),
    };
    if (!weights.output) weights.output = weights.tokEmbd;
    const f = new Model(q.config, weights, q.tokenizer, q.backend, q.fingerprint, { ...q.info, dtype: 'f32' });
    return { q, f };
  };
  const batch = (m: LlamaModel): { tokens: number[][]; targets: number[][] } => {
    const rows = ['Once upon a time, there was a little dog named Max.', 'Lily saw a big red ball in the park and ran to get it.'];
    const tokens = rows.map((r) => [1, ...m.tokenizer.encode(r)].slice(0, 10));
    const targets = tokens.map((r) => r.map((_, t) => (t >= 4 && t + 1 < r.length ? r[t + 1] : IGNORE)));
    return { tokens, targets };
  };
  const normRel = (a: Float32Array, b: Float32Array): number => {
    let e = 0,
      n = 0;
    for (let i = 0; i < a.length; i++) {
      e += (a[i] - b[i]) ** 2;
      n += b[i] ** 2;
    }
    return Math.sqrt(e / n);
  };

  it('Q8_0: weights stay blocks; loss and prompt/gate gradients within 8-bit-activation error of the dequantized f32 model, on both backends', async () => {
    const ts = await models('ts');
    assert.ok(ts.q.weights.layers[0].w1.data instanceof Uint8Array);
    const { tokens, targets } = batch(ts.q);
    const run = (m: LlamaModel) => {
      const a = createAdapter(m, { promptLength: 4, adapterLayers: 2, gateInit: 'random', seed: 3 });
      return m.lossAndGrads(tokens, targets, a);
    };
    const rq = run(ts.q),
      rf = run(ts.f);
    assert.ok(Math.abs(rq.loss - rf.loss) < 0.01 * rf.loss, `loss ${rq.loss} vs ${rf.loss}`);
    // the 8-bit activations of the forward move these gradients by 4-8% (normwise) on this tiny
    // model; storing the saved activations in bf16 by ~0.3%. A wrong backward is off by ~100%.
    for (const [name, g] of rf.grads)
      assert.ok(normRel(rq.grads.get(name) as Float32Array, g) < 0.15, `${name}: ${normRel(rq.grads.get(name) as Float32Array, g)}`);
    // Native against the oracle: each kernel agrees to 1e-5, but an activation a few ulps away
    // (another summation order in rmsnorm) can land on the other side of a rounding boundary of
    // its 8-bit quantization, which moves that product by a whole step: the same bounds as above.
    const nat = await models('native').catch(() => null);
    if (nat && nat.q.backend.name === 'native') {
      const rn = run(nat.q);
      assert.ok(Math.abs(rn.loss - rq.loss) < 0.01 * rq.loss, `native loss ${rn.loss} vs TS ${rq.loss}`);
      for (const [name, g] of rq.grads)
        assert.ok(normRel(rn.grads.get(name) as Float32Array, g) < 0.15, `native ${name}: ${normRel(rn.grads.get(name) as Float32Array, g)}`);
    }
  });

  it('Q8_0: the loss goes down (finetune on the real Alpaca file)', async () => {
    const q = await loadModel(tinystories656k, { dtype: 'q8_0' });
    const { first, last } = await alpacaRun(q, path.join(tmp, 'q8.safetensors'), 4, { metrics: null, plot: null });
    assert.ok(last < first - 0.2, `loss ${first} -> ${last}`);
  });
});

for (const backend of backendsUnderTest())
  describe(`finetune [${backend}]`, () => {
    let m: LlamaModel;
    before(async () => {
      m = await loadModel(stories260K, { backend });
    });

    const common = (out: string) => ({
      data: alpaca,
      out,
      promptLength: 4,
      adapterLayers: 3,
      epochs: 2,
      batchSize: 4,
      lr: 2e-2,
      warmupSteps: 2,
      maxSeqLen: 96,
      valSize: 3,
      seed: 5,
      gradAccum: 2,
      clipGrad: 5,
      metrics: null,
      plot: null,
      overwrite: true, // both backends' suites write the same files
    });

    it('train N steps == train N/2, interrupt, resume, train N/2: identical losses and adapter bytes', async () => {
      const full = await finetune({ model: m, ...common(path.join(tmp, 'full.safetensors')) });
      const N = full.steps;
      assert.equal(N, 6); // 20 records / 4 per batch = 5 micro-batches -> 3 steps per epoch with accumulation 2
      const ac = new AbortController();
      const half = await finetune({
        model: m,
        ...common(path.join(tmp, 'half.safetensors')),
        signal: ac.signal,
        onProgress: (p) => {
          if (p.step === N / 2) ac.abort();
        },
      });
      assert.equal(half.aborted, true);
      assert.equal(half.steps, N / 2);
      const rest = await finetune({ model: m, ...common(path.join(tmp, 'half.safetensors')), resume: half.checkpoint });
      assert.deepEqual([...half.losses, ...rest.losses], full.losses);
      assert.deepEqual(fs.readFileSync(path.join(tmp, 'half.safetensors')), fs.readFileSync(path.join(tmp, 'full.safetensors')));
    });

    it('resuming with different settings is refused, naming the setting', async () => {
      const r = await finetune({ model: m, ...common(path.join(tmp, 'r.safetensors')), maxSteps: 1 });
      await assert.rejects(
        finetune({ model: m, ...common(path.join(tmp, 'r.safetensors')), resume: r.checkpoint, batchSize: 2 }),
        /cannot resume: batch_size was 4 in the checkpoint, now 2/,
      );
    });

    it('loss goes down on the real Alpaca file (tinystories-656k), with metrics and a loss curve', async () => {
      const tiny = await loadModel(tinystories656k, { backend });
      const out = path.join(tmp, 'alpaca.safetensors');
      const { r, first, last } = await alpacaRun(tiny, out, 6);
      assert.ok(last < first - 0.3, `loss ${first} -> ${last}`);
      assert.ok(r.valLosses[r.valLosses.length - 1].valLoss! < r.valLosses[0].valLoss!);
      const lines = fs
        .readFileSync(out.replace('.safetensors', '.metrics.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { step: number; loss?: number });
      assert.equal(lines.filter((l) => l.loss !== undefined).length, r.steps);
      assert.match(fs.readFileSync(out.replace('.safetensors', '.loss.svg'), 'utf8'), /<svg[\s\S]*<polyline/);
    });

    it('refuses a validation split that leaves nothing to train on', async () => {
      await assert.rejects(finetune({ model: m, data: alpaca, out: path.join(tmp, 'x.safetensors') }), /alpaca\.json: 23 records, but --val-size 200/);
    });

    it('the one filter decides both what trains and what is saved (a prompts-only adapter)', async () => {
      class PromptsOnly extends Adapter {
        override isParam(name: string): boolean {
          return name.endsWith('.adaption_prompt');
        }
      }
      const a = new PromptsOnly(m, { promptLength: 4, adapterLayers: 2, gate: 'tanh-per-head' });
      for (const [name, t] of a.tensors()) if (name.endsWith('.adaption_prompt')) t.fill(0.5);
      a.invalidate();
      const out = path.join(tmp, `prompts-only-${backend}.safetensors`);
      const r = await finetune({ model: m, ...common(out), adapter: a, maxSteps: 3 });
      assert.equal(r.adapter, a);
      const t = a.tensors();
      for (const l of [3, 4]) {
        assert.ok(
          t.get(`layers.${l}.adaption_prompt`)!.some((x) => x !== 0.5),
          `layer ${l} prompt trained`,
        );
        assert.ok(
          t.get(`layers.${l}.adaption_gate`)!.every((x) => x === 0),
          `layer ${l} gate untouched`,
        );
      }
      assert.deepEqual(
        readAdapterInfo(out).tensors.map((x) => x.name),
        ['layers.3.adaption_prompt', 'layers.4.adaption_prompt'],
      );
      assert.deepEqual(
        readSafetensors(r.checkpoint)
          .names()
          .filter((n) => !n.startsWith('optimizer.')),
        ['layers.3.adaption_prompt', 'layers.4.adaption_prompt'],
      );
    });
  });
