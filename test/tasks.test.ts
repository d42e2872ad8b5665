// The task methods around the encoders: the official SQuAD scores (against the official scripts'
// functions run by Python on crafted cases), SQuAD reading, windowing and span decoding, labelled
// data and its errors (a label outside the label set, an answer outside its context, an image that
// does not decode: each names the record), head gradients against finite differences, the task
// adapter file (round trip, refusals), the LLaMA backbone (prompt tuning in tanh mode = the
// LLaMA-Adapter, the vpt joint softmax's gradients against finite differences, zero gates = the
// base), training that learns, and the `task` commands end to end.

import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { getBackend } from '../src/backend/index.js';
import { inspectReport } from '../src/cli/inspect.js';
import { createAdapter } from '../src/methods/v1/adapter.js';
import { loadAdapter } from '../src/methods/v1/interop/registry.js';
import { LlamaBackbone, RobertaBackbone, VitBackbone } from '../src/methods/prompts/backbones.js';
import { loadTaskMethod, saveTaskMethod } from '../src/methods/prompts/file.js';
import { RobertaClassifierHead, LinearTaskHead } from '../src/methods/prompts/heads.js';
import { createTaskMethod, taskStep } from '../src/methods/prompts/task.js';
import { loadEncoder } from '../src/model/encoders/load.js';
import type { RobertaModel } from '../src/model/encoders/roberta.js';
import { writeSyntheticRoberta } from '../src/model/encoders/synthetic.js';
import type { VitModel } from '../src/model/encoders/vit.js';
import { loadModel } from '../src/model/load.js';
import { zerosLike } from '../src/model/method.js';
import { labelIds, labelSet, readImageClassification, readTextClassification } from '../src/train/tasks/data.js';
import { taskBackbone, taskData } from '../src/train/tasks/pipeline.js';
import { bestAnswer, exactMatch, f1Score, normalizeAnswer, qaFeatures, readSquad, squadScores } from '../src/train/tasks/squad.js';
import { trainTask } from '../src/train/tasks/train.js';
import { loadTokenizer } from '../src/tokenizer/load.js';
import { assets, fixtures, maxAbs, maxAbsDiff, repoRoot, tinystories656k } from './helpers.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'la-task-'));
const be = getBackend('ts');

function writeSquad(file: string, paragraphs: { context: string; qas: unknown[] }[]): string {
  fs.writeFileSync(file, JSON.stringify({ version: '1.1', data: [{ title: 't', paragraphs }] }));
  return file;
}

describe('SQuAD scoring = the official scripts', () => {
  it('normalisation, exact match and F1 on crafted cases equal evaluate-v1.1.py / v2.0.py (run by Python)', () => {
    const cases: [string, string[]][] = [
      ['Denver Broncos', ['Denver Broncos', 'The Denver Broncos']],
      ['the Denver Broncos!', ['Denver Broncos']],
      ['Broncos', ['Denver Broncos']],
      ['Carolina Panthers', ['Denver Broncos']],
      ['an apple a day', ['apple day']],
      ['theater', ['the ater']], // "the" inside a word stays
      ['A.B.C.', ['abc']],
      ['  lots\t of\n\nspace  ', ['lots of space']],
      ['non\u00a0breaking', ['non breaking']], // Python's str.split() splits at U+00A0
      ['zero\u200bwidth', ['zero width']], // ... but not at U+200B
      ['café the', ['café']],
      ['éthe word', ['éthe word']], // \b is Unicode-aware in Python: no boundary between é and t
      ['the the the', ['the']],
      ['cat cat dog', ['cat dog dog']], // repeated tokens: Counter intersection
      ['', ['something']],
      ['', ['']],
      ['', ['the']], // a gold answer that normalises to nothing
      ['The', ['a']],
      ['ÜBER Straße', ['über straße']],
      ['1,000', ['1000']],
      ['“quoted”', ['quoted']], // curly quotes are not string.punctuation
      ['x', []], // an unanswerable question (v2: gold [''])
      ['', []],
    ];
    const r = spawnSync('/usr/bin/python3', [path.join(repoRoot, 'test/python/squad_official.py')], { input: JSON.stringify({ cases }), encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const py = JSON.parse(r.stdout) as { v1: (number | null)[][]; v2: number[][]; normalized: string[] };
    cases.forEach(([pred, golds], i) => {
      assert.equal(normalizeAnswer(pred), py.normalized[i], `normalize ${JSON.stringify(pred)}`);
      const ex = { id: String(i), question: '', context: '', answers: golds.map((t) => ({ text: t, start: 0 })), where: '' };
      const s = squadScores([ex], new Map([[String(i), pred]]));
      assert.equal(s.exact_match / 100, py.v2[i][0], `v2 exact ${JSON.stringify([pred, golds])}`);
      assert.ok(Math.abs(s.f1 / 100 - py.v2[i][1]) < 1e-12, `v2 f1 ${JSON.stringify([pred, golds])}: ${s.f1 / 100} vs ${py.v2[i][1]}`);
      if (golds.length > 0 && golds.every((g) => normalizeAnswer(g) !== '')) {
        assert.equal(Math.max(...golds.map((g) => exactMatch(pred, g))), py.v1[i][0], `v1 exact ${i}`);
        assert.ok(Math.abs(Math.max(...golds.map((g) => f1Score(pred, g))) - (py.v1[i][1] ?? NaN)) < 1e-12, `v1 f1 ${i}`);
      }
    });
    // the totals: mean x 100, an unanswered question scores 0
    const exs = cases.slice(0, 4).map(([, g], i) => ({ id: String(i), question: '', context: '', answers: g.map((t) => ({ text: t, start: 0 })), where: '' }));
    const tot = squadScores(exs, new Map(cases.slice(0, 3).map(([p], i) => [String(i), p])));
    assert.equal(tot.exact_match, 50);
    assert.ok(Math.abs(tot.f1 - (100 * (1 + 1 + py.v2[2][1])) / 4) < 1e-9);
  });
});

describe('SQuAD data: reading, windows, span targets, decoding; bad records name themselves', () => {
  const ctx = 'Super Bowl 50 was played at Levi’s Stadium in Santa Clara, California.';
  it('reads answers, builds windows over a long context with the answer in the right tokens, decodes spans back to context text', async () => {
    const f = writeSquad(path.join(tmp, 'ok.json'), [
      {
        context: ctx,
        qas: [{ id: 'q1', question: 'Where was it played?', answers: [{ text: 'Santa Clara, California', answer_start: ctx.indexOf('Santa') }] }],
      },
    ]);
    const ex = readSquad(f);
    assert.equal(ex.length, 1);
    const tok = await loadTokenizer(path.join(tinystories656k, 'tokenizer.json'));
    const sp = { bos: 0, eos: 2, pad: 1 };
    const { features, words } = qaFeatures(ex, tok, sp, { maxLength: 32, stride: 6, maxQuestion: 64 });
    assert.ok(features.length > 1, 'the context needs several windows');
    const hit = features.filter((ft) => ft.start > 0);
    assert.ok(hit.length >= 1, 'some window holds the whole answer');
    for (const ft of features) {
      assert.ok(ft.ids.length <= 32);
      assert.deepEqual([ft.ids[0], ft.ids.at(-1)], [0, 2]);
      if (ft.start === 0) continue;
      // logits peaked at the target decode to the answer's words
      const start = new Float32Array(ft.ids.length).fill(-10),
        end = new Float32Array(ft.ids.length).fill(-10);
      start[ft.start] = 5;
      end[ft.end] = 5;
      assert.equal(bestAnswer(ex[0], words[0], [{ f: ft, start, end }], false), 'Santa Clara, California.');
    }
    assert.equal(squadScores(ex, new Map([['q1', 'Santa Clara, California.']])).exact_match, 100);
  });

  it('an answer outside its context, or not what the context holds there, or a duplicate id: errors naming the question', () => {
    const bad = (qas: unknown[]) => () => readSquad(writeSquad(path.join(tmp, 'bad.json'), [{ context: 'short context', qas }]));
    assert.throws(
      bad([{ id: 'x1', question: 'q', answers: [{ text: 'context', answer_start: 40 }] }]),
      /qas\[0\] \(id x1\): answers\[0\] \("context" at 40\) lies outside its context of 13 characters/,
    );
    assert.throws(
      bad([{ id: 'x2', question: 'q', answers: [{ text: 'context', answer_start: 0 }] }]),
      /\(id x2\): answers\[0\] "context" is not what its context holds at 0 \("short c"\)/,
    );
    assert.throws(bad([{ id: 'x3', question: 'q', answers: [] }]), /\(id x3\): no answers/);
    assert.throws(
      bad([
        { id: 'd', question: 'q', answers: [{ text: 'short', answer_start: 0 }] },
        { id: 'd', question: 'q', answers: [{ text: 'short', answer_start: 0 }] },
      ]),
      /qas\[1\] \(id d\): id d appears twice/,
    );
    assert.throws(() => readSquad(path.join(tmp, 'missing.json')), /missing\.json: cannot read SQuAD JSON/);
  });
});

describe('labelled data: errors name the record', () => {
  it('a label missing from the label set; a malformed line; an image that does not decode', () => {
    const f = path.join(tmp, 'text.jsonl');
    fs.writeFileSync(f, '{"text": "a", "label": "x"}\n\n{"text": "b", "label": 3}\n');
    const recs = readTextClassification(f);
    assert.deepEqual(labelSet(recs), ['3', 'x']);
    assert.throws(() => labelIds(recs, ['x', 'y']), /text\.jsonl: line 3: label "3" is not in the label set \(x, y\)/);
    fs.writeFileSync(f, '{"text": "a", "label": "x"}\n{"text": 5, "label": "x"}\n');
    assert.throws(() => readTextClassification(f), /text\.jsonl: line 2: "text" must be a non-empty string/);
    fs.writeFileSync(f, '{"text": "a", "label": "x"}\n{"text": "a", label: "x"}\n');
    assert.throws(() => readTextClassification(f), /text\.jsonl: line 2: invalid JSON/);
    // images: a folder per class, and a JSONL whose second image is not an image
    const dir = path.join(tmp, 'imgs');
    for (const [cls, file] of [
      ['dog', 'imagebind_dog_image.jpg'],
      ['dog', 'two-dogs.jpg'],
      ['bird', 'imagebind_bird_image.jpg'],
    ]) {
      fs.mkdirSync(path.join(dir, cls), { recursive: true });
      fs.copyFileSync(path.join(assets, 'images', file), path.join(dir, cls, file));
    }
    const folder = readImageClassification(dir);
    assert.deepEqual(
      folder.map((r) => r.label),
      ['bird', 'dog', 'dog'],
    );
    fs.writeFileSync(path.join(tmp, 'notimage.jpg'), 'this is text, not a JPEG');
    const jl = path.join(tmp, 'images.jsonl');
    fs.writeFileSync(jl, `{"image": "imgs/dog/two-dogs.jpg", "label": "dog"}\n{"image": "notimage.jpg", "label": "dog"}\n`);
    const vit = loadEncoder(path.join(fixtures, 'vit-tiny'), be) as VitModel;
    const bb = taskBackbone(vit, 'image-classification');
    const d = taskData(bb, vit, 'image-classification', jl, { labels: ['bird', 'dog'] });
    d.dataset.batch([0]);
    assert.throws(() => d.dataset.batch([1]), /images\.jsonl: line 2: .*notimage\.jpg/);
    assert.throws(
      () => taskData(bb, vit, 'image-classification', jl, { labels: ['cat', 'bird'] }),
      /images\.jsonl: line 1: label "dog" is not in the label set \(cat, bird\)/,
    );
  });
});

describe('task heads: gradients against finite differences', () => {
  it('linear and RoBERTa classifier heads: d weights, d biases, d features', () => {
    for (const head of [new LinearTaskHead('classifier', 6, 3), new RobertaClassifierHead(6, 3)]) {
      let s = 1;
      for (const t of head.tensors().values()) for (let i = 0; i < t.length; i++) t[i] = Math.sin(s++) * 0.7;
      const n = 4,
        x = Float32Array.from({ length: n * 6 }, (_, i) => Math.cos(i)),
        r = Float32Array.from({ length: n * 3 }, (_, i) => Math.sin(3 * i));
      const f = () => head.forward(be, x, n).reduce((a, v, i) => a + v * r[i], 0);
      f();
      const grads = new Map([...head.tensors()].map(([k, t]) => [k, new Float32Array(t.length)]));
      const dx = head.backward(be, r, grads);
      const fd = (t: Float32Array, i: number) => {
        const v = t[i];
        t[i] = v + 1e-2;
        const p = f();
        t[i] = v - 1e-2;
        const m = f();
        t[i] = v;
        return (p - m) / 2e-2;
      };
      for (const [k, t] of head.tensors())
        for (let i = 0; i < t.length; i += 3) assert.ok(Math.abs(fd(t, i) - grads.get(k)![i]) < 2e-3, `${head.kind} ${k}[${i}]`);
      for (let i = 0; i < x.length; i += 2) assert.ok(Math.abs(fd(x, i) - dx[i]) < 2e-3, `${head.kind} d features[${i}]`);
    }
  });
});

describe('prompt methods on the LLaMA backbone (the section-5 comparison runs these)', async () => {
  const model = await loadModel(tinystories656k, { backend: 'ts' });
  const bb = new LlamaBackbone(model);
  const tokens = [model.tokenizer.encode('Once upon a time, Lily', { bos: true }), model.tokenizer.encode('Tom had a red ball.', { bos: true })];
  const T = Math.max(tokens[0].length, tokens[1].length);
  const x = { tokens: tokens.map((t) => [...t, ...new Array(T - t.length).fill(2)]), lengths: tokens.map((t) => t.length) };
  const labels = { labels: Int32Array.from([1, 0]) };

  it('tanh prompts = the LLaMA-Adapter (tanh-per-head): same features and prompt / gate gradients, bit for bit', () => {
    const ad = createAdapter(model, { promptLength: 3, adapterLayers: 2, gate: 'tanh-per-head', seed: 5, gateInit: 'random' });
    const m = createTaskMethod(bb, { task: 'text-classification', labels: ['a', 'b'], prompts: { mode: 'tanh', promptLength: 3, adapterLayers: 2 }, seed: 1 });
    const t = m.tensors();
    for (const [k, v] of ad.parameters()) t.get(k)!.set(v);
    m.invalidate();
    const rows = Int32Array.from(x.lengths, (len, b) => b * T + len - 1);
    const fm = bb.features(x, m.source, false).feats;
    const fa = model.features(x.tokens, rows, ad, true);
    assert.deepEqual(fm, fa);
    const dF = Float32Array.from(fa, (_, i) => Math.sin(i));
    const ga = zerosLike(ad);
    ad.paramGrads(model.featuresBackward(dF), ga);
    bb.features(x, m.source, true);
    const gm = zerosLike(m);
    m.paramGrads([bb.backward(dF) as never], gm);
    for (const [k, g] of ga) assert.deepEqual(gm.get(k), g, k);
  });

  it('zero gates give the base features exactly; vpt gradients (prompts in one causal softmax with the tokens, GQA) match finite differences', () => {
    const rows = Int32Array.from(x.lengths, (len, b) => b * T + len - 1);
    const base = model.features(x.tokens, rows, null, false);
    const z = createTaskMethod(bb, { task: 'text-classification', labels: ['a', 'b'], prompts: { mode: 'tanh', promptLength: 4, adapterLayers: 2 } });
    assert.deepEqual(bb.features(x, z.source, false).feats, base);
    const m = createTaskMethod(bb, {
      task: 'text-classification',
      labels: ['a', 'b'],
      prompts: { mode: 'vpt', promptLength: 2, adapterLayers: 2, promptScale: 0.5 },
      seed: 3,
    });
    assert.ok(maxAbsDiff(bb.features(x, m.source, false).feats, base) > 1e-3, 'vpt prompts change the output from the start');
    const grads = zerosLike(m);
    taskStep(bb, m, x, labels, grads);
    const loss = () => (m.invalidate(), taskStep(bb, m, x, labels, null).loss);
    for (const [k, p] of m.tensors()) {
      if (!m.isParam(k) || !k.includes('prompt')) continue;
      const g = grads.get(k)!;
      for (const i of [0, 7, 64, 129, p.length - 1]) {
        const v = p[i];
        p[i] = v + 5e-3;
        const lp = loss();
        p[i] = v - 5e-3;
        const lm = loss();
        p[i] = v;
        const fd = (lp - lm) / 1e-2;
        assert.ok(Math.abs(fd - g[i]) <= 3e-3 * maxAbs(g) + 1e-4, `${k}[${i}]: finite difference ${fd} vs ${g[i]}`);
      }
    }
    m.invalidate();
  });
});

describe('task adapters: training, the file, the commands', () => {
  const robDir = path.join(tmp, 'rob');
  writeSyntheticRoberta(robDir, { hidden: 32, layers: 2, heads: 4, intermediate: 64, vocabSize: 2048, maxPositions: 66 }, 3);
  fs.copyFileSync(path.join(tinystories656k, 'tokenizer.json'), path.join(robDir, 'tokenizer.json'));
  const names = ['Lily', 'Tom', 'Ben', 'Sue', 'Max', 'Anna'],
    things = ['ball', 'cat', 'dog', 'cake', 'box', 'tree'];
  const paras = Array.from({ length: 40 }, (_, i) => {
    const n = names[i % 6],
      t = things[(i * 5) % 6];
    const context = `One day ${n} found a ${t} in the park.`;
    return { context, qas: [{ id: `q${i}`, question: `What did ${n} find?`, answers: [{ text: t, answer_start: context.indexOf(` ${t} `) + 1 }] }] };
  });
  const train = writeSquad(path.join(tmp, 'train.json'), paras.slice(0, 32));
  const dev = writeSquad(path.join(tmp, 'dev.json'), paras.slice(32));

  it('gated prompts learn extractive QA on a frozen (random) RoBERTa; the file round-trips and refuses other bases', async () => {
    const rob = loadEncoder(robDir, getBackend()) as RobertaModel; // the fastest backend: the assertions have slack for either
    const tok = await loadTokenizer(path.join(robDir, 'tokenizer.json'));
    const bb = new RobertaBackbone(rob, 'all');
    const d = taskData(bb, rob, 'question-answering', train, { tokenizer: tok });
    const e = taskData(bb, rob, 'question-answering', dev, { tokenizer: tok });
    const m = createTaskMethod(bb, { task: 'question-answering', prompts: { mode: 'tanh', promptLength: 4, adapterLayers: 2 }, seed: 0 });
    const before = e.evaluate(m).metrics;
    const r = trainTask(bb, m, d.dataset, { epochs: 12, batchSize: 8, lr: 1e-2 });
    const after = e.evaluate(m).metrics;
    assert.ok(r.losses.at(-1)! < r.losses[0] / 2, `loss ${r.losses[0]} -> ${r.losses.at(-1)}`);
    assert.ok(after.exact_match >= 75 && after.exact_match > before.exact_match, `EM ${before.exact_match} -> ${after.exact_match}`);
    const file = path.join(tmp, 'qa.safetensors');
    saveTaskMethod(m, bb, file);
    const back = loadTaskMethod(file, bb);
    assert.deepEqual(e.evaluate(back).metrics, after);
    assert.equal(back.parameterCount, m.parameterCount);
    const rep = await inspectReport(file);
    assert.equal(rep.kind, 'task adapter');
    assert.equal(rep.parameters, m.parameterCount);
    assert.equal((rep.metadata as Record<string, string>).base_architecture, 'roberta');
    // another base: other weights (refused unless forced), another architecture, a LLaMA loader
    const other = path.join(tmp, 'rob2');
    writeSyntheticRoberta(other, { hidden: 32, layers: 2, heads: 4, intermediate: 64, vocabSize: 2048, maxPositions: 66 }, 4);
    const bb2 = new RobertaBackbone(loadEncoder(other, be) as RobertaModel, 'all');
    assert.throws(() => loadTaskMethod(file, bb2), /trained on base weights with fingerprint [0-9a-f]+, this model's is/);
    loadTaskMethod(file, bb2, { force: true });
    const vit = new VitBackbone(loadEncoder(path.join(fixtures, 'vit-tiny'), be) as VitModel);
    assert.throws(() => loadTaskMethod(file, vit), /trained for a base model "roberta D=32 layers=2 heads=4 kv_heads=4", this model is "vit D=48/);
    const llama = await loadModel(tinystories656k, { backend: 'ts' });
    assert.throws(
      () => loadAdapter(file, llama),
      /a task adapter \(question-answering head with tanh prompts over a roberta base\); use it with `llama-adapter task eval`/,
    );
  });

  it('llama-adapter task train / eval: SQuAD on RoBERTa, images on ViT (folder per class), bad input named', () => {
    const bin = path.join(repoRoot, 'bin/llama-adapter.js');
    const cli = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', env: { ...process.env, LLAMA_ADAPTER_BACKEND: 'ts' } });
    const out = path.join(tmp, 'cli-qa.safetensors');
    let r = cli(
      'task',
      'train',
      '-m',
      robDir,
      '--task',
      'question-answering',
      '-d',
      train,
      '--eval',
      dev,
      '-o',
      out,
      '--method',
      'vpt',
      '--prompt-length',
      '2',
      '--epochs',
      '1',
      '--json',
    );
    assert.equal(r.status, 0, r.stderr);
    const res = JSON.parse(r.stdout) as { steps: number; eval: { exact_match: number } };
    assert.equal(res.steps, 2);
    r = cli('task', 'eval', '-m', robDir, '-a', out, '-d', dev, '--json');
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), res.eval);
    const imgs = path.join(tmp, 'imgs');
    const vout = path.join(tmp, 'vit.safetensors');
    r = cli(
      'task',
      'train',
      '-m',
      path.join(fixtures, 'vit-tiny'),
      '--task',
      'image-classification',
      '-d',
      imgs,
      '--eval',
      imgs,
      '-o',
      vout,
      '--method',
      'probe',
      '--epochs',
      '2',
      '--json',
    );
    assert.equal(r.status, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { eval: { total: number } }).eval.total, 3);
    r = cli('task', 'eval', '-m', path.join(fixtures, 'vit-tiny'), '-a', vout, '-d', path.join(tmp, 'images.jsonl'));
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /images\.jsonl: line 2: .*notimage\.jpg/);
    // text classification on a LLaMA backbone (features at the last real token), a label missing from the label set
    const txt = path.join(tmp, 'stories.jsonl');
    fs.writeFileSync(
      txt,
      ['Lily saw a cat.', 'Tom ran home.', 'The sun was hot.', 'A dog barked.'].map((t, i) => JSON.stringify({ text: t, label: i % 2 ? 'b' : 'a' })).join('\n'),
    );
    r = cli(
      'task',
      'train',
      '-m',
      tinystories656k,
      '--task',
      'text-classification',
      '-d',
      txt,
      '--eval',
      txt,
      '-o',
      path.join(tmp, 'llama-cls.safetensors'),
      '--prompt-length',
      '2',
      '--max-steps',
      '2',
      '--batch-size',
      '2',
      '--json',
    );
    assert.equal(r.status, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { eval: { total: number } }).eval.total, 4);
    assert.throws(() => taskBackbone(loadEncoder(robDir, be), 'image-classification'), /a RoBERTa model takes text-classification or question-answering/);
  });
});
