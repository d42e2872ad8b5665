// `npm run demo -- --multimodal`: does the image matter? The base model writes stories that start
// "Once upon a time, <name> saw a <thing>." for things pictured in real photos (../shared/assets/images:
// dogs, a bird, cars, a girl, bicycles, a man, a lake); each story is paired with a photo of its thing
// (random crops and flips, so no two training images are the same) and the instruction "Write a story
// about <name> and what is in the picture." (the thing is not named). Two names per thing are held
// out. A multimodal adapter is trained with the image features, and the same adapter with every image
// replaced by a blank one; on the held-out combinations each writes a story for a new crop of a
// training photo, and (dog, car) for a photo never seen in training; we count how often the story
// names the pictured thing, and how often it names another of the things (Wilson 95% intervals).
// Run for nsfwjs's pretrained MobileNetV2 and for the random-weight CLIP-shaped tower.

import * as path from 'node:path';
import { loadModel } from '../../src/index.js';
import type { LlamaModel } from '../../src/model/model.js';
import { generateBatch } from '../../src/generate/generate.js';
import { finetune } from '../../src/train/finetune.js';
import { type MultimodalAdapter, createMultimodalAdapter } from '../../src/methods/v1/multimodal.js';
import { Rng } from '../../src/core/rng.js';
import { readImage, type RgbImage } from '../../src/vision/image.js';
import { preprocessImage } from '../../src/vision/preprocess.js';
import { loadImageEncoder } from '../../src/vision/encoder.js';
import type { ImageEncoder } from '../../src/vision/image-encoder.js';

interface Thing {
  word: RegExp; // how a story names it (whole words, any case)
  train: string[]; // photos used for training (and for the seen-photo test, as new crops)
  unseen: string[]; // photos of the thing never used in training
}
const THINGS: Record<string, Thing> = {
  dog: { word: /\b(dog|dogs|puppy|puppies)\b/i, train: ['two-dogs.jpg'], unseen: ['imagebind_dog_image.jpg'] },
  bird: { word: /\bbirds?\b/i, train: ['imagebind_bird_image.jpg'], unseen: [] },
  car: { word: /\b(car|cars|taxi|taxis)\b/i, train: ['imagebind_car_image.jpg', 'llava_extreme_ironing.jpg'], unseen: ['COCO_test2014_000000074115.jpg'] },
  girl: { word: /\bgirls?\b/i, train: ['llama_adapter_girl.jpg'], unseen: [] },
  bike: { word: /\b(bike|bikes|bicycle|bicycles)\b/i, train: ['COCO_test2014_000000251884.jpg'], unseen: [] },
  man: { word: /\b(man|men)\b/i, train: ['COCO_train2014_000000032872.jpg'], unseen: [] },
  lake: { word: /\blakes?\b/i, train: ['llava_waterview.jpg'], unseen: [] },
};
const NAMES = ['Lily', 'Tom', 'Sue', 'Ben', 'Mia', 'Max'];
const TEST_CROPS = 8; // crops per held-out combination and photo

export interface MmDemoOptions {
  assets: string;
  modelPath: string;
  encoders: string[]; // e.g. nsfwjs:mobilenet_v2 and the clip-tiny fixture directory
  perCombo: number; // training stories per name/thing combination
  seed: number;
  outDir: string; // adapters and checkpoints are written here
  onLog: (line: string) => void;
}

/** A random crop (70-100% of the shorter side) and maybe a mirror of an image. */
function variant(img: RgbImage, rng: Rng): RgbImage {
  const s = Math.floor(Math.min(img.width, img.height) * (0.7 + 0.3 * rng.uniform()));
  const x0 = Math.floor(rng.uniform() * (img.width - s + 1)),
    y0 = Math.floor(rng.uniform() * (img.height - s + 1));
  const flip = rng.uniform() < 0.5;
  const out = new Uint8Array(s * s * 3);
  for (let y = 0; y < s; y++)
    for (let x = 0; x < s; x++) {
      const sx = x0 + (flip ? s - 1 - x : x);
      out.set(img.data.subarray(((y0 + y) * img.width + sx) * 3, ((y0 + y) * img.width + sx) * 3 + 3), (y * s + x) * 3);
    }
  return { width: s, height: s, data: out };
}

/** Wilson score interval (95%) of k successes in n, as [low, high] percentages. */
export function wilson(k: number, n: number): [number, number] {
  if (n === 0) return [0, 0];
  const z = 1.96,
    p = k / n;
  const c = (p + (z * z) / (2 * n)) / (1 + (z * z) / n);
  const h = (z * Math.sqrt((p * (1 - p)) / n + (z * z) / (4 * n * n))) / (1 + (z * z) / n);
  return [100 * Math.max(0, c - h), 100 * Math.min(1, c + h)];
}

async function features(enc: ImageEncoder, imgs: RgbImage[]): Promise<Float32Array[]> {
  const S = enc.preprocess.size,
    n = 3 * S * S;
  const out: Float32Array[] = [];
  for (let i = 0; i < imgs.length; i += 16) {
    const part = imgs.slice(i, i + 16);
    const px = new Float32Array(part.length * n);
    part.forEach((im, j) => px.set(preprocessImage(im, enc.preprocess), j * n));
    const f = await enc.features(px, part.length);
    for (let j = 0; j < part.length; j++) out.push(f.slice(j * enc.identity.featureDim, (j + 1) * enc.identity.featureDim));
  }
  return out;
}

export interface MmRow {
  encoder: string;
  variant: 'image' | 'blank image';
  test: 'seen photos' | 'unseen photos';
  hits: number; // stories naming the pictured thing
  other: number; // stories naming another of the things
  n: number;
  ci: [number, number];
  otherCi: [number, number];
  valLoss: number | null;
}

interface TestRow {
  name: string;
  thing: string;
  test: MmRow['test'];
  img: RgbImage;
}

export async function runMultimodalDemo(o: MmDemoOptions): Promise<MmRow[]> {
  const model: LlamaModel = await loadModel(o.modelPath);
  const rng = new Rng(o.seed);
  const read = (f: string): RgbImage => readImage(path.join(o.assets, 'images', f));
  const things = Object.keys(THINGS);
  const photos = Object.fromEntries(things.map((t) => [t, THINGS[t].train.map(read)]));
  // held-out combinations: two names per thing
  const held = new Set(things.flatMap((t, i) => [0, 1].map((k) => `${NAMES[(i * 2 + k + o.seed) % NAMES.length]}/${t}`)));
  // the base model's stories
  const prompts: { name: string; thing: string }[] = [];
  for (const name of NAMES) for (const thing of things) if (!held.has(`${name}/${thing}`)) for (let r = 0; r < o.perCombo; r++) prompts.push({ name, thing });
  o.onLog(`sampling ${prompts.length} stories from the base model (${things.length} things, ${held.size} held-out name/thing combinations)`);
  const starts = prompts.map(({ name, thing }) => `Once upon a time, ${name} saw a ${thing}.`);
  const gens = await generateBatch(model, starts, { temperature: 0.8, topP: 0.9, maxTokens: 40, seeds: starts.map((_, i) => o.seed * 100003 + i) });
  const train = prompts.map((p, i) => ({ ...p, img: variant(photos[p.thing][i % photos[p.thing].length], rng), story: starts[i] + gens[i].text }));
  // held-out tests: new crops of the training photos, and crops of the photos never trained on
  const tests: TestRow[] = [];
  for (const c of held) {
    const [name, thing] = c.split('/');
    for (let r = 0; r < TEST_CROPS; r++) tests.push({ name, thing, test: 'seen photos', img: variant(photos[thing][r % photos[thing].length], rng) });
    for (const f of THINGS[thing].unseen) {
      const img = read(f);
      for (let r = 0; r < TEST_CROPS; r++) tests.push({ name, thing, test: 'unseen photos', img: variant(img, rng) });
    }
  }
  const rows: MmRow[] = [];
  for (const encPath of o.encoders) {
    const enc = await loadImageEncoder(encPath, { backend: model.backend });
    o.onLog(`encoder ${encPath}: ${enc.identity.featureDim} features; encoding ${train.length + tests.length + 1} images`);
    const feats = await features(
      enc,
      train.map((t) => t.img),
    );
    const blank = (await features(enc, [{ width: 8, height: 8, data: new Uint8Array(192).fill(128) }]))[0];
    const tf = await features(
      enc,
      tests.map((t) => t.img),
    );
    for (const v of ['image', 'blank image'] as const) {
      const mm = createMultimodalAdapter(model, { promptLength: 10, adapterLayers: 2, encoder: enc.identity, seed: o.seed });
      const recs = train.map((t) => ({ instruction: `Write a story about ${t.name} and what is in the picture.`, input: '', output: ` ${t.story}` }));
      // the blank variant gives every record (and every test) the same features
      const r = await trainInMemory(model, mm, encPath, recs, v === 'image' ? feats : feats.map(() => blank), o);
      const gen = await generateBatch(
        model,
        tests.map((t) => `Write a story about ${t.name} and what is in the picture.\n`),
        { temperature: 0.3, topP: 0.75, maxTokens: 40, seeds: tests.map((_, i) => i) },
        tests.map((_, i) => r.forImage(v === 'image' ? tf[i] : blank)),
      );
      for (const test of ['seen photos', 'unseen photos'] as const) {
        const idx = tests.flatMap((t, i) => (t.test === test ? [i] : []));
        if (!idx.length) continue;
        const hits = idx.filter((i) => THINGS[tests[i].thing].word.test(gen[i].text)).length;
        const other = idx.filter((i) => things.some((t) => t !== tests[i].thing && THINGS[t].word.test(gen[i].text))).length;
        rows.push({
          encoder: encPath,
          variant: v,
          test,
          hits,
          other,
          n: idx.length,
          ci: wilson(hits, idx.length),
          otherCi: wilson(other, idx.length),
          valLoss: r.valLoss,
        });
        // what the stories name, per pictured thing (the confusion table, on the log)
        const named = things.map((t) => {
          const mine = idx.filter((i) => tests[i].thing === t);
          const counts = things.map((u) => `${u} ${mine.filter((i) => THINGS[u].word.test(gen[i].text)).length}`);
          return mine.length ? `${t} (${mine.length}): ${counts.filter((c) => !c.endsWith(' 0')).join(', ') || 'none'}` : '';
        });
        o.onLog(
          `${encPath} / ${v} / ${test}: ${hits}/${idx.length} stories name the pictured thing, ${other} another thing; named: ${named.filter(Boolean).join('; ')}`,
        );
      }
    }
  }
  return rows;
}

/** finetune() over in-memory features: records get `image` keys that a one-off encoder resolves to the given features. */
async function trainInMemory(
  model: LlamaModel,
  mm: MultimodalAdapter,
  encPath: string, // recorded in the adapter file, so `generate --image` finds the encoder
  recs: { instruction: string; input: string; output: string }[],
  feats: Float32Array[],
  o: MmDemoOptions,
): Promise<MultimodalAdapter & { valLoss: number | null }> {
  const byName = new Map<string, Float32Array>();
  const withImg = recs.map((r, i) => {
    byName.set(`mem:${i}`, feats[i]);
    return { ...r, image: `mem:${i}` };
  });
  const encoder: ImageEncoder = {
    identity: mm.encoder,
    path: encPath,
    preprocess: { size: 1, mean: [0, 0, 0], std: [1, 1, 1], layout: 'chw', crop: 'hf' },
    features: async () => {
      throw new Error('in-memory features only');
    },
  };
  const r = await finetune({
    model,
    adapter: mm,
    imageEncoder: encoder,
    imageFeatures: (image) => byName.get(image) ?? null,
    data: withImg,
    out: path.join(o.outDir, `mm-${mm.encoder.format}-${feats[0] === feats[1] ? 'blank' : 'image'}.safetensors`),
    metrics: null,
    plot: null,
    epochs: 6,
    batchSize: 8,
    lr: 0.02,
    valSize: 16,
    promptStyle: 'plain',
    seed: o.seed,
    overwrite: true,
  });
  return Object.assign(r.adapter as MultimodalAdapter, { valLoss: r.valLosses.at(-1)?.valLoss ?? null });
}
