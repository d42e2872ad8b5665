// The multimodal and ScienceQA commands as a user runs them (a child process): `generate --image`
// with the reference multimodal adapter saved as a file gives the reference's greedy ids;
// `inspect` shows the encoder and projection of that file; `eval scienceqa` prints the table, its
// likelihood-ranked row equals the ranking from the training loss (an independent path), and
// warns when the tokenizer cannot write the answer format; `--export-train` writes the train split.

import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PNG } from 'pngjs';
import { loadModel } from '../src/index.js';
import { createAdapter } from '../src/methods/v1/adapter.js';
import { saveMultimodalAdapter } from '../src/methods/v1/multimodal-file.js';
import { readSafetensors } from '../src/core/safetensors.js';
import { PROMPT_STYLES } from '../src/train/prompt-styles.js';
import { loadLlavaScienceQA, sqaPrompt, sqaTarget } from '../src/train/scienceqa.js';
import { loadImageEncoder } from '../src/vision/encoder.js';
import { assets, fixtures, repoRoot, tinystories656k } from './helpers.js';
import { fixtureMultimodalAdapter, fixtureRows } from './mm-fixture.js';

const bin = path.join(repoRoot, 'bin/llama-adapter.js');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'llama-adapter-cli-mm-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
const sqaDir = path.join(assets, 'data/scienceqa');

function run(...args: string[]): { code: number; out: string; err: string } {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}

describe('cli generate --image and inspect (multimodal)', () => {
  it('greedy with the reference adapter file and two-dogs (as PIL decodes it) gives the reference ids; inspect shows encoder and projection', async () => {
    const model = await loadModel(tinystories656k);
    const clipDir = path.join(fixtures, 'clip-tiny');
    const encoder = await loadImageEncoder(clipDir, { backend: model.backend });
    const file = path.join(tmp, 'mm.safetensors');
    saveMultimodalAdapter(fixtureMultimodalAdapter(model, encoder.identity), file, clipDir);
    // two-dogs.jpg as PIL decoded it (the fixture's pixels): jpeg-js differs by a few levels
    const pre = readSafetensors(path.join(fixtures, 'clip-preprocess.safetensors'));
    const [h, w] = pre.info('two_dogs_rgb').shape;
    const rgb = pre.tensorBytes('two_dogs_rgb');
    const png = new PNG({ width: w, height: h });
    for (let i = 0; i < w * h; i++) png.data.set([rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2], 255], 4 * i);
    const img = path.join(tmp, 'two-dogs.png');
    fs.writeFileSync(img, PNG.sync.write(png));
    const want = fixtureRows('mm_greedy')[0]; // BOS + 24 greedy ids with two-dogs
    const r = run('generate', '-m', tinystories656k, '-a', file, '--image', img, '-p', '', '--temperature', '0', '-n', String(want.length - 1), '--json');
    assert.equal(r.code, 0, r.err);
    const j = JSON.parse(r.out) as { prompt_ids: number[]; ids: number[] };
    assert.deepEqual([...j.prompt_ids, ...j.ids], want);
    // the same prompt without the image (the text part alone) differs: the image is used
    const noImg = JSON.parse(run('generate', '-m', tinystories656k, '-a', file, '-p', '', '--temperature', '0', '-n', '24', '--json').out) as { ids: number[] };
    assert.notDeepEqual(noImg.ids, j.ids);

    const ins = run('inspect', file, '--json');
    assert.equal(ins.code, 0, ins.err);
    const info = JSON.parse(ins.out) as Record<string, unknown> & {
      image_encoder: Record<string, unknown>;
      projection: { in_features: number; out_features: number; parameters: number; tensors: string[] };
    };
    const D = model.config.dim,
      F = encoder.identity.featureDim;
    assert.equal(info.kind, 'llama-adapter multimodal adapter');
    assert.deepEqual({ ...info.image_encoder, description: undefined }, { ...encoder.identity, path: clipDir, description: undefined });
    assert.deepEqual(info.projection.tensors, [`proj.weight [${D}, ${F}]`, `proj.bias [${D}]`, `proj_norm.weight [${D}]`, `proj_norm.bias [${D}]`]);
    assert.equal(info.projection.parameters, D * F + 3 * D);
    assert.equal(info.parameters, D * F + 3 * D + (info.text_parameters as number));
  });
});

describe('cli eval scienceqa', () => {
  it('prints the table; the most-likely-choice row equals the ranking by the training loss; warns about a format the tokenizer loses', async () => {
    const n = 6;
    const r = run('eval', 'scienceqa', '--data', sqaDir, '-m', tinystories656k, '--limit', String(n), '--rank-choices', '--json');
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /has no token for "\(\)": in --answer-format paper they become <unk>/);
    const j = JSON.parse(r.out) as { problems: number; unparsed: number; table: { Avg: { n: number } }; ranked: { Avg: { acc: number; n: number } } };
    assert.equal(j.problems, n);
    assert.equal(j.table.Avg.n, n);
    // independent ranking: the summed log-likelihood of each choice's answer through lossAndGrads
    // (the training loss) with a zero-gate adapter, which is exactly the base model
    const model = await loadModel(tinystories656k);
    const zero = createAdapter(model, { promptLength: 1, adapterLayers: 1, gate: 'tanh-per-head' });
    const ps = loadLlavaScienceQA(
      path.join(sqaDir, 'llava_test_CQM-A.json'),
      path.join(sqaDir, 'problems_first1773.json'),
      path.join(sqaDir, 'captions.json'),
    ).slice(0, n);
    const ctx = model.config.maxSeqLen;
    let right = 0;
    for (const p of ps) {
      const text = PROMPT_STYLES.plain.prompt({ instruction: sqaPrompt(p, true), input: '' });
      const prompt = model.tokenizer.encode(text, { bos: true });
      const lp = p.choices.map((_, c) => {
        let full = model.tokenizer.encode(text + sqaTarget(p, 'paper', c), { bos: true });
        let start = prompt.length; // the first answer token
        if (full.length > ctx) {
          // a long problem keeps BOS and its end (the choices, "Answer:" and the answer)
          start -= full.length - ctx;
          full = [full[0], ...full.slice(full.length - ctx + 1)];
        }
        const targets = full.map((_, t) => (t + 1 < full.length && t + 1 >= start ? full[t + 1] : -100));
        const { loss, tokens } = model.lossAndGrads([full], [targets], zero);
        return -loss * tokens;
      });
      if (lp.indexOf(Math.max(...lp)) === p.answer) right++;
    }
    assert.equal(j.ranked.Avg.n, n);
    assert.equal(j.ranked.Avg.acc, (100 * right) / n);
  });

  it('--export-train --answer-format letters: the 1,041 train problems as finetune records without parentheses', () => {
    const out = path.join(tmp, 'train.jsonl');
    const r = run('eval', 'scienceqa', '--data', sqaDir, '--export-train', out, '--answer-format', 'letters');
    assert.equal(r.code, 0, r.err);
    const recs = fs
      .readFileSync(out, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { instruction: string; output: string });
    assert.equal(recs.length, 1041);
    assert.match(recs[0].instruction, /^Question: .*\nContext: .*\nChoices:\nA\. .*\nB\. [\s\S]*\nAnswer:$/);
    assert.ok(recs.every((x) => /^ The answer is [A-E]\.$/.test(x.output)));
  });
});
