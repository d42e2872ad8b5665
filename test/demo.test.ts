// The demo (`llama-adapter demo`): instruction extraction, swaps and the held-out split on fixed
// texts, then the whole pipeline in its quick configuration on the real tinystories-656k model
// with the TypeScript backend: the data it builds is honest and the report is complete.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { runDemo, type DemoReport } from '../apps/demo/demo.js';
import {
  augmentSwaps,
  extractInstruction,
  instructionFor,
  mentionsName,
  mentionsObject,
  satisfies,
  splitHeldout,
  type StoryInstruction,
} from '../apps/demo/instructions.js';
import { aggregate, scoreOne } from '../apps/demo/score.js';
import { wilson } from '../apps/demo/multimodal.js';
import { sentenceEnds, trimStory } from '../apps/demo/stories.js';
import { LlamaAdapterError } from '../src/core/errors.js';
import { tinystories656k } from './helpers.js';

test("the multimodal demo's Wilson 95% interval: the closed forms at 0 and n successes, symmetry, and a textbook value", () => {
  const z2 = 1.96 ** 2;
  for (const n of [1, 32, 112]) {
    const [lo0, hi0] = wilson(0, n);
    assert.equal(lo0, 0);
    assert.ok(Math.abs(hi0 - (100 * z2) / (n + z2)) < 1e-9); // upper bound z^2 / (n + z^2)
    const [loN, hiN] = wilson(n, n);
    assert.ok(Math.abs(loN - (100 * n) / (n + z2)) < 1e-9 && Math.abs(hiN - 100) < 1e-9);
    for (let k = 0; k <= n; k += Math.ceil(n / 7)) {
      const [a, b] = wilson(k, n),
        [c, d] = wilson(n - k, n);
      assert.ok(Math.abs(a - (100 - d)) < 1e-9 && Math.abs(b - (100 - c)) < 1e-9);
    }
  }
  // 81 of 263 (Newcombe 1998, Table I, example: 0.2553 to 0.3662)
  const [lo, hi] = wilson(81, 263);
  assert.ok(Math.abs(lo - 25.53) < 0.01 && Math.abs(hi - 36.62) < 0.01, `${lo} ${hi}`);
});

test('name and object matching: whole words; names case-sensitive, objects any case and plural', () => {
  assert.ok(mentionsName("Tim's ball was red.", 'Tim'));
  assert.ok(!mentionsName('Timmy ran.', 'Tim'));
  assert.ok(!mentionsName('max speed', 'Max'));
  assert.ok(mentionsObject('Two Balls fell.', 'ball'));
  assert.ok(!mentionsObject('a balloon', 'ball'));
  assert.ok(mentionsObject('many boxes', 'box'));
});

test('extractInstruction: the most frequent known name and object, and the instruction says so', () => {
  const story = 'Once upon a time, there was a girl named Lily. Lily had a red ball. Tom saw the ball and a cat.';
  const it = extractInstruction(story);
  assert.ok(it);
  assert.equal(it.name, 'Lily');
  assert.equal(it.object, 'ball');
  assert.equal(it.instruction, 'Write a short story about Lily and a ball.');
  assert.equal(instructionFor({ name: 'Mia', object: 'apple' }), 'Write a short story about Mia and an apple.');
  assert.equal(extractInstruction('Once upon a time, there was a big sun. It was hot.'), null);
});

test('trimStory keeps whole sentences within the limit', () => {
  const text = 'One day, Tim went out. He said, "Hi." Then he saw a dog. The dog ran after the';
  assert.deepEqual(
    sentenceEnds(text).map((e) => text.slice(0, e).slice(-4)),
    ['out.', 'Hi."', 'dog.'],
  );
  assert.equal(trimStory({ text, finished: false }, 40), 'One day, Tim went out. He said, "Hi."');
  assert.equal(trimStory({ text, finished: false }, 10), null);
  assert.equal(trimStory({ text: 'Tim ran. Tim sat.', finished: true }, 100), 'Tim ran. Tim sat.');
});

test('augmentSwaps renames the character and the object everywhere, and the instruction still holds', () => {
  const story = 'Once upon a time, there was a little girl named Lily. Lily had a red ball. She threw the Ball.';
  const items = augmentSwaps([extractInstruction(story)!], 5, 3);
  assert.equal(items.length, 5);
  for (const it of items) {
    assert.ok(satisfies(it.story, it), it.story);
    assert.equal(it.instruction, instructionFor(it));
    assert.ok(['Sue', 'Mia', 'Amy', 'Lucy', 'Anna'].includes(it.name), `${it.name}: a girl stays a girl`);
    assert.ok(!mentionsName(it.story, 'Lily') && !mentionsObject(it.story, 'ball'), it.story);
    assert.ok(['box', 'car', 'kite', 'boat', 'book', 'doll', 'cake', 'hat', 'tree'].includes(it.object), `${it.object}: a thing stays a thing`);
  }
});

function checkSplit(train: readonly StoryInstruction[], heldout: readonly { name: string; object: string }[]): void {
  for (const c of heldout) {
    for (const it of train) assert.ok(!satisfies(it.story, c), `training story mentions held-out ${c.name}+${c.object}: ${it.story}`);
    assert.ok(
      train.some((it) => it.name === c.name),
      `held-out name ${c.name} never leads a training story`,
    );
    assert.ok(
      train.some((it) => it.object === c.object),
      `held-out object ${c.object} never leads a training story`,
    );
  }
}

test('splitHeldout: no training story mentions a held-out pair; each held-out name and object is trained', () => {
  const names = ['Tim', 'Lily', 'Tom', 'Sue'];
  const objects = ['ball', 'cat', 'dog', 'car'];
  const items: StoryInstruction[] = [];
  for (const name of names)
    for (const object of objects)
      for (let k = 0; k < 3; k++) {
        const story = `One day, ${name} found a ${object}. ${name} was happy.`;
        items.push({ name, object, instruction: instructionFor({ name, object }), story });
      }
  const split = splitHeldout(items, { heldoutCombos: 4, seed: 1, maxDropFraction: 0.3 });
  assert.equal(split.heldout.length, 4);
  checkSplit(split.train, split.heldout);
  assert.equal(split.heldoutStories.length, 12);
  for (const it of split.heldoutStories) assert.ok(split.heldout.some((c) => c.name === it.name && c.object === it.object));
  assert.throws(() => splitHeldout(items.slice(0, 3), { heldoutCombos: 4, seed: 1 }), LlamaAdapterError);
});

test('score: name AND object, name-only and object-only rates', () => {
  const s = [
    scoreOne({ text: 'Lily had a ball.', ids: [1, 2], finishReason: 'stop' }, { name: 'Lily', object: 'ball' }),
    scoreOne({ text: 'Lily had a cat.', ids: [1, 2, 3], finishReason: 'length' }, { name: 'Lily', object: 'ball' }),
    scoreOne({ text: 'Tom had balls.', ids: [1], finishReason: 'stop' }, { name: 'Lily', object: 'ball' }),
    scoreOne({ text: 'Nothing here.', ids: [1, 2], finishReason: 'stop' }, { name: 'Lily', object: 'ball' }),
  ];
  assert.deepEqual({ ...aggregate(s), bothCi95: 0 }, { n: 4, both: 0.25, bothCi95: 0, name: 0.5, object: 0.5, meanTokens: 2, finished: 0.75 });
  // 4 independent generations: 1.96 * sd([1, 0, 0, 0]) / 2
  assert.ok(Math.abs(aggregate(s).bothCi95 - (1.96 * 0.5) / 2) < 1e-12);
  // clustered by instruction: rates 0.5 and 0 over two clusters
  assert.ok(Math.abs(aggregate(s, ['a', 'b', 'a', 'b']).bothCi95 - (1.96 * Math.SQRT1_2 * 0.5) / Math.SQRT2) < 1e-12);
});

const readJsonl = <T>(file: string): T[] =>
  fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as T);

test('runDemo --quick on tinystories-656k (TypeScript backend): honest data, trained adapters, a complete report', { timeout: 120_000 }, async () => {
  const outDir = fs.mkdtempSync(path.join(os.tmpdir(), 'llama-adapter-demo-'));
  try {
    const t0 = Date.now();
    const lines: string[] = [];
    const r: DemoReport = await runDemo({ quick: true, modelPath: tinystories656k, backend: 'ts', outDir, onLog: (l) => lines.push(l) });
    const wall = (Date.now() - t0) / 1000;
    assert.ok(wall < 60, `quick demo took ${wall.toFixed(1)} s on the TypeScript backend`);
    assert.equal(r.backend, 'ts');
    assert.ok(lines.some((l) => l.startsWith('stories:')) && lines.some((l) => l.startsWith('train ')) && lines.some((l) => l.startsWith('evaluate ')));

    // the instructions are satisfied by their stories; held-out pairs never occur in training
    type Row = StoryInstruction & { output: string };
    const train = readJsonl<Row>(r.files.train).map((x) => ({ ...x, story: x.output }));
    assert.equal(train.length, r.data.train);
    assert.ok(train.length >= 8);
    for (const it of train) {
      assert.ok(satisfies(it.story, it), `"${it.instruction}" is not satisfied by: ${it.story}`);
      assert.equal(it.instruction, instructionFor(it));
    }
    const heldout = readJsonl<{ name: string; object: string; instruction: string }>(r.files.heldout);
    assert.deepEqual(
      heldout.map((c) => [c.name, c.object]),
      r.data.heldoutCombos.map((c) => [c.name, c.object]),
    );
    assert.ok(heldout.length >= 1);
    checkSplit(train, heldout);
    for (const v of readJsonl<Row>(r.files.val)) assert.ok(heldout.some((c) => c.name === v.name && c.object === v.object));
    // stories really came from the model: the training stories are cut from the sampled ones (modulo swaps)
    const stories = readJsonl<{ text: string }>(r.files.stories);
    assert.equal(stories.length, r.config.stories);

    // three scores (plus the reference) in [0, 1], over the same prompts
    for (const s of [r.scores.base, r.scores.zeroInit, r.scores.randomInit, r.scores.baseTitle]) {
      assert.equal(s.n, r.evaluation.prompts);
      for (const x of [s.both, s.name, s.object, s.finished]) assert.ok(x >= 0 && x <= 1, String(x));
      assert.ok(s.both <= Math.min(s.name, s.object));
    }
    // training lowered the loss (both runs); the random-init run starts far from the base model
    for (const t of [r.training.zeroInit, r.training.randomInit]) {
      assert.ok(t.steps >= 4, `${t.label}: ${t.steps} steps`);
      assert.ok(t.finalLoss < t.firstLoss, `${t.label}: loss ${t.firstLoss} -> ${t.finalLoss}`);
    }
    assert.ok(r.training.randomInit.firstLoss > r.training.zeroInit.firstLoss);

    for (const f of [
      'adapter_zero-init',
      'adapter_random-init',
      'metrics_zero-init',
      'metrics_random-init',
      'chart',
      'train',
      'heldout',
      'generations',
      'report_json',
      'report_md',
    ]) {
      assert.ok(fs.existsSync(r.files[f]) && fs.statSync(r.files[f]).size > 0, `${f} missing`);
    }
    assert.ok(fs.existsSync(r.files.val)); // may be empty: few held-out stories in the quick run
    assert.match(fs.readFileSync(r.files.chart, 'utf8'), /zero-init: train[\s\S]*random-init: train/);
    assert.match(fs.readFileSync(r.files.report_md, 'utf8'), /\| adapter, zero-init gates \|/);
    assert.deepEqual(JSON.parse(fs.readFileSync(r.files.report_json, 'utf8')).scores, JSON.parse(JSON.stringify(r.scores)));
  } finally {
    fs.rmSync(outDir, { recursive: true, force: true });
  }
});

test('runDemo: user errors are LlamaAdapterErrors with clear messages', async () => {
  const outDir = fs.mkdtempSync(path.join(os.tmpdir(), 'llama-adapter-demo-'));
  try {
    await assert.rejects(
      runDemo({ modelPath: '/nonexistent/model', outDir }),
      (e: unknown) => e instanceof LlamaAdapterError && /model not found/.test(e.message),
    );
  } finally {
    fs.rmSync(outDir, { recursive: true, force: true });
  }
  await assert.rejects(runDemo({ quick: true, stories: 3 }), (e: unknown) => e instanceof LlamaAdapterError && /stories/.test(e.message));
  // procfs refuses mkdir with ENOENT under an existing parent: Node's recursive mkdir looped forever there
  await assert.rejects(
    runDemo({ quick: true, outDir: '/proc/llama-adapter-demo/x' }),
    (e: unknown) => e instanceof LlamaAdapterError && /\/proc\/llama-adapter-demo\/x: cannot create the output directory \(ENOENT\)/.test(e.message),
  );
});
