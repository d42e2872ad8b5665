// The multimodal adapter against the reference (../shared/fixtures tinystories656k-mm-adapter and
// clip-tiny-encode, made by reference/refmultimodal.py): CLIP global features of real photos, I_p,
// logits with a different image per row, rows without an image, the masked loss and the gradients
// of prompts, gates and the whole projection (1e-4), greedy ids per image; zero gates give the base
// model's logits exactly, whatever the image. On every backend.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadAdapter, loadModel } from '../src/index.js';
import { finetune } from '../src/train/finetune.js';
import { createServer } from '../src/serve/server.js';
import { readInstructionData } from '../src/train/finetune.js';
import { loadMultimodalAdapter, multimodalFromFile } from '../src/methods/v1/multimodal-file.js';
import { FeatureStore } from '../src/vision/features.js';
import { readSafetensors } from '../src/core/safetensors.js';
import { generateBatch } from '../src/generate/generate.js';
import { createMultimodalAdapter, MultimodalAdapter } from '../src/methods/v1/multimodal.js';
import { ClipEncoder, loadImageEncoder } from '../src/vision/encoder.js';
import { loadClipVision } from '../src/vision/clip.js';
import { backendsUnderTest } from './backends.js';
import { assets, fixtures, maxAbs, maxAbsDiff, tinystories656k } from './helpers.js';
import { fixtureMultimodalAdapter, fixtureRows, mmFixture } from './mm-fixture.js';
import { getBackend } from '../src/backend/index.js';
import type { AdapterDescription } from '../src/serve/adapters.js';
import { describeEncoder } from '../src/vision/image-encoder.js';

const fx = mmFixture;
const enc = readSafetensors(path.join(fixtures, 'clip-tiny-encode.safetensors'));
const t = (n: string): Float32Array => fx.tensorF32(n);
const rows = fixtureRows;

function relClose(got: Float32Array, want: Float32Array, what: string): void {
  const d = maxAbsDiff(got, want),
    m = maxAbs(want);
  assert.ok(d <= 1e-4 * m + 1e-9, `${what}: max error ${d} > 1e-4 x ${m}`);
}

for (const id of backendsUnderTest()) {
  describe(`multimodal adapter on ${id} matches refmultimodal.py`, async () => {
    const model = await loadModel(tinystories656k, { backend: id });
    const tower = loadClipVision(path.join(fixtures, 'clip-tiny'));
    const encoder = new ClipEncoder(tower, getBackend(id));
    const c = model.config;
    const [L, K] = fx.info('prompts').shape;
    const mm = fixtureMultimodalAdapter(model, encoder.identity);
    const F = mm.featureDim;
    const tokens = rows('tokens'),
      targets = rows('targets');

    it('CLIP features of the two photos (layers 1, 2, 3 = the default for 3 layers) and I_p within 1e-4', async () => {
      assert.deepEqual(encoder.identity.layers, [1, 2, 3]);
      const feats = await encoder.features(enc.tensorF32('pixels'), 2);
      assert.ok(maxAbsDiff(feats, t('image_features')) < 1e-4, 'global features vs the mm fixture');
      assert.ok(maxAbsDiff(feats, enc.tensorF32('global_features')) < 1e-4, 'global features vs clip-tiny-encode');
      assert.ok(maxAbsDiff(mm.imagePrompt(t('image_features'), 2), t('image_prompt')) < 1e-4, 'I_p');
    });

    const f0 = t('image_features').slice(0, F),
      f1 = t('image_features').slice(F, 2 * F);

    it('logits with a different image per row, and rows without an image, within 1e-4', () => {
      const mmLogits = model.forward(tokens, { adapter: mm.rowSources([f0, f1]) });
      assert.ok(maxAbsDiff(mmLogits, t('mm_logits')) < 1e-4, `mm logits ${maxAbsDiff(mmLogits, t('mm_logits'))}`);
      const textOnly = model.forward(tokens, { adapter: mm.rowSources([null, null]) });
      assert.ok(maxAbsDiff(textOnly, t('text_only_logits')) < 1e-4, 'text-only logits');
      // one row with, one without: each row as in its own pass
      const mixed = model.forward(tokens, { adapter: mm.rowSources([f0, null]) });
      const half = mixed.length / 2;
      assert.ok(maxAbsDiff(mixed.subarray(0, half), t('mm_logits').subarray(0, half)) < 1e-4, 'mixed row 0 (image)');
      assert.ok(maxAbsDiff(mixed.subarray(half), t('text_only_logits').subarray(half)) < 1e-4, 'mixed row 1 (no image)');
    });

    it('loss and gradients of prompts, gates, proj.weight/bias, proj_norm.weight/bias within 1e-4', () => {
      const { loss, grads } = model.lossAndGrads(tokens, targets, mm, undefined, mm.rowSources([f0, f1]));
      assert.ok(Math.abs(loss - t('loss')[0]) < 1e-4, `loss ${loss} vs ${t('loss')[0]}`);
      const gp = new Float32Array(L * K * c.dim),
        gg = new Float32Array(L * c.nHeads);
      for (let i = 0; i < L; i++) {
        const l = c.nLayers - L + i;
        gp.set(grads.get(`layers.${l}.adaption_prompt`)!, i * K * c.dim);
        gg.set(grads.get(`layers.${l}.adaption_gate`)!, i * c.nHeads);
      }
      relClose(gp, t('grad_prompts'), 'd prompts');
      relClose(gg, t('grad_gates'), 'd gates');
      relClose(grads.get('proj.weight')!, t('grad_proj_weight'), 'd proj.weight');
      relClose(grads.get('proj.bias')!, t('grad_proj_bias'), 'd proj.bias');
      relClose(grads.get('proj_norm.weight')!, t('grad_proj_norm_weight'), 'd proj_norm.weight');
      relClose(grads.get('proj_norm.bias')!, t('grad_proj_norm_bias'), 'd proj_norm.bias');
      // the same image twice in one batch is one row group per row's source: gradients still sum right
      const same = model.lossAndGrads(tokens, targets, mm, undefined, mm.rowSources([f0, f0]));
      assert.ok(Number.isFinite(same.loss));
    });

    it("greedy decoding from BOS with each row's image gives the reference ids", async () => {
      const want = rows('mm_greedy');
      const res = await generateBatch(
        model,
        [[want[0][0]], [want[1][0]]],
        { temperature: 0, maxTokens: want[0].length - 1, stopTokens: [] },
        mm.rowSources([f0, f1]),
      );
      res.forEach((r, b) => assert.deepEqual([want[b][0], ...r.ids], want[b], `row ${b}`));
    });

    it("zero gates: exactly the base model's logits with any image (and no gradient reaches the projection)", () => {
      const z = new MultimodalAdapter(mm.text, mm.encoder);
      z.projW.set(mm.projW);
      for (const [name, v] of z.parameters()) if (name.endsWith('adaption_gate')) v.fill(0);
      z.invalidate();
      const base = model.forward(tokens);
      const noise = f1.map((x, i) => x * 3 + Math.sin(i));
      for (const imgs of [
        [f0, f1],
        [noise, null],
      ] as const)
        assert.deepEqual(model.forward(tokens, { adapter: z.rowSources(imgs) }), base);
      const { grads } = model.lossAndGrads(tokens, targets, z, undefined, z.rowSources([f0, f1]));
      assert.equal(maxAbs(grads.get('proj.weight')!), 0);
    });
  });
}

describe('multimodal training, adapter file and feature cache', () => {
  const clipDir = path.join(fixtures, 'clip-tiny');
  const img = (n: string): string => path.join(assets, 'images', n);
  const recs = Array.from({ length: 12 }, (_, i) => {
    const dog = i % 2 === 0;
    return {
      instruction: 'What is in the picture?',
      input: '',
      output: dog ? 'Two dogs.' : 'A bird.',
      image: img(dog ? 'two-dogs.jpg' : 'imagebind_bird_image.jpg'),
    };
  });

  it('finetune --image-encoder: trains prompts, gates and projection; the file names its encoder, reloads exactly and refuses another', async () => {
    const model = await loadModel(tinystories656k);
    const encoder = await loadImageEncoder(clipDir, { backend: model.backend });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'la-mm-'));
    const out = path.join(dir, 'mm.safetensors');
    const r = await finetune({
      model,
      data: recs,
      out,
      imageEncoder: encoder,
      epochs: 2,
      batchSize: 4,
      valSize: 2,
      lr: 1e-2,
      promptLength: 4,
      adapterLayers: 2,
      promptStyle: 'plain',
      featureCache: path.join(dir, 'feats'),
    });
    assert.ok(r.adapter instanceof MultimodalAdapter);
    assert.ok(maxAbs(r.adapter.projB) > 0, 'the projection trained');
    const meta = readSafetensors(out).metadata;
    assert.equal(meta.method, 'multimodal');
    assert.deepEqual(JSON.parse(meta.image_encoder), encoder.identity);
    assert.equal(meta.image_encoder_path, clipDir);
    // reload (encoder from the recorded path): same logits with an image
    const { adapter: back, encoder: e2 } = await loadMultimodalAdapter(out, model);
    const [f] = await new FeatureStore(e2).ofFiles([img('two-dogs.jpg')]);
    const toks = [[1, 5, 9, 200, 31]];
    assert.deepEqual(model.forward(toks, { adapter: back.forImage(f) }), model.forward(toks, { adapter: (r.adapter as MultimodalAdapter).forImage(f) }));
    // another encoder (the same tower read at other layers) and the text loader are refused by name
    const other = new ClipEncoder(loadClipVision(clipDir), model.backend, [3]);
    assert.throws(() => multimodalFromFile(out, model, other.identity), /trained with image encoder hf-clip .*layers 1,2,3.*not hf-clip .*layers 3/);
    assert.throws(() => loadAdapter(out, model), /a multimodal adapter .*load it with its image encoder/);
    // the disk cache: a new store over the same folder encodes nothing
    const again = new FeatureStore(encoder, path.join(dir, 'feats'));
    const g = await again.ofFiles([img('two-dogs.jpg'), img('imagebind_bird_image.jpg')]);
    assert.equal(again.encoded, 0);
    assert.ok(maxAbsDiff(g[0], f) < 1e-5); // computed in a batch of 2 vs alone: rounding differs
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('bad data: a missing image, an unreadable image, a record with an image but no encoder: errors naming record and file, nothing written', async () => {
    const model = await loadModel(tinystories656k);
    const encoder = await loadImageEncoder(clipDir, { backend: model.backend });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'la-mm-'));
    const out = path.join(dir, 'x.safetensors');
    fs.writeFileSync(path.join(dir, 'cut.jpg'), fs.readFileSync(img('two-dogs.jpg')).subarray(0, 3000));
    const data = path.join(dir, 'data.jsonl');
    const run = (lines: object[]) => {
      fs.writeFileSync(data, lines.map((l) => JSON.stringify(l)).join('\n'));
      return finetune({ model, data, out, imageEncoder: encoder, epochs: 1, valSize: 0, promptStyle: 'plain' });
    };
    await assert.rejects(run([recs[0], { ...recs[1], image: 'nope.png' }]), /data\.jsonl: record 2: image .*nope\.png cannot be read \(ENOENT\)/);
    await assert.rejects(run([recs[0], { ...recs[1], image: 'cut.jpg' }]), /data\.jsonl: record 2: .*cut\.jpg: cannot decode JPEG/);
    await assert.rejects(finetune({ model, data: recs, out, epochs: 1, valSize: 0 }), /\(records\): record 1 has an image .* but no image encoder was given/);
    // LLaVA's conversation format reads as an instruction record with its image
    fs.writeFileSync(
      data,
      JSON.stringify([
        {
          id: '1',
          image: 'cut.jpg',
          conversations: [
            { from: 'human', value: '<image>\nWhat is it?' },
            { from: 'gpt', value: 'A dog.' },
          ],
        },
      ]),
    );
    assert.deepEqual(readInstructionData(data), [{ instruction: 'What is it?', input: '', output: 'A dog.', image: 'cut.jpg' }]);
    assert.ok(!fs.existsSync(out));
    fs.rmSync(dir, { recursive: true, force: true });
  });
});

describe('serving a multimodal adapter: image_url content parts', () => {
  it('data: URLs and files under --image-dir; rows with different images batch together and each equals its own run; bad images are 400s', async () => {
    const model = await loadModel(tinystories656k);
    const encoder = await loadImageEncoder(path.join(fixtures, 'clip-tiny'), { backend: model.backend });
    const mm = createMultimodalAdapter(model, { promptLength: 4, adapterLayers: 2, encoder: encoder.identity, seed: 3 });
    for (const [name, v] of mm.parameters()) if (name.endsWith('adaption_gate')) v.fill(0.8);
    mm.invalidate();
    const imgDir = path.join(assets, 'images');
    const server = createServer(model, {
      modelPath: tinystories656k,
      multimodal: [{ name: 'mm', file: 'mm.safetensors', adapter: mm, encoder }],
      imageDir: imgDir,
      ui: false,
    });
    const url = await server.listen('127.0.0.1', 0);
    try {
      const ask = async (content: unknown, model = 'mm') => {
        const r = await fetch(`${url}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model, messages: [{ role: 'user', content }], max_tokens: 12, temperature: 0 }),
        });
        return { status: r.status, body: (await r.json()) as { choices?: { message: { content: string } }[]; error?: { message: string; param: string } } };
      };
      const dogs = fs.readFileSync(path.join(imgDir, 'two-dogs.jpg'));
      const dataUrl = `data:image/jpeg;base64,${dogs.toString('base64')}`;
      const withImage = (u: string) => [
        { type: 'text', text: 'Once upon a time' },
        { type: 'image_url', image_url: { url: u } },
      ];
      const [a, b, c] = await Promise.all([ask(withImage(dataUrl)), ask(withImage('imagebind_bird_image.jpg')), ask('Once upon a time')]);
      assert.equal(a.status, 200, JSON.stringify(a.body));
      const alone = await ask(withImage('two-dogs.jpg'));
      assert.equal(a.body.choices![0].message.content, alone.body.choices![0].message.content, 'a data URL and the same file give the same answer');
      assert.equal(b.status, 200);
      const birdAlone = await ask(withImage('imagebind_bird_image.jpg'));
      assert.equal(b.body.choices![0].message.content, birdAlone.body.choices![0].message.content, 'batched with others = alone');
      assert.notEqual(a.body.choices![0].message.content, b.body.choices![0].message.content, 'the image changes the answer');
      assert.equal(c.status, 200);
      // the adapter listing shows the encoder and the projection, not only the text part
      const listed = (await (await fetch(`${url}/v1/adapters`)).json()) as { data: AdapterDescription[] };
      const one = (await (await fetch(`${url}/v1/adapters/mm`)).json()) as AdapterDescription;
      const D = model.config.dim,
        F = encoder.identity.featureDim;
      for (const d of [listed.data.find((x) => x.id === 'mm')!, one]) {
        assert.deepEqual(d.multimodal, {
          image_encoder: { ...encoder.identity, path: path.join(fixtures, 'clip-tiny'), description: describeEncoder(encoder.identity) },
          projection: { in_features: F, out_features: D, parameters: D * F + 3 * D },
          text_parameters: 2 * (4 * D + model.config.nHeads),
        });
        assert.equal(d.parameters, D * F + 3 * D + 2 * (4 * D + model.config.nHeads));
      }
      for (const [content, m, re] of [
        [withImage(dataUrl), path.basename(tinystories656k), /does not take images/],
        [withImage('data:image/gif;base64,R0lGOD'), 'mm', /data URL must be data:image\/png/],
        [
          withImage(`data:image/png;base64,${Buffer.from('not a png').toString('base64')}`),
          'mm',
          /image_url \(image\/png data URL\): not an image this library reads/,
        ],
        [withImage('../../fixtures/clip-tiny/config.json'), 'mm', /outside the image directory/],
        [withImage('nope.jpg'), 'mm', /no image "nope.jpg"/],
        [withImage('http://example.com/x.png'), 'mm', /does not fetch http/],
        [[...withImage(dataUrl), { type: 'image_url', image_url: { url: dataUrl } }], 'mm', /2 images in one request/],
      ] as const) {
        const r = await ask(content, m);
        assert.equal(r.status, 400, JSON.stringify(r.body));
        assert.equal(r.body.error!.param, 'messages');
        assert.match(r.body.error!.message, re);
      }
    } finally {
      await server.close(1000);
    }
  });
});
