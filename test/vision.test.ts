// Image decoding, CLIP preprocessing and the CLIP vision tower against the golden fixtures of the
// independent PyTorch reference (../shared/fixtures clip-preprocess and clip-tiny-encode, made by
// reference/refclip.py with PIL 9.4 and HF's math): the PIL bicubic port bit for bit, pixels within
// 1e-6, every hidden state, CLS, pooled output and image embedding within 1e-4, on every backend.
// Bad images (truncated, not an image, a decompression bomb, grey / alpha channels) give errors
// naming the file.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PNG } from 'pngjs';
import { getBackend } from '../src/backend/index.js';
import { readSafetensors } from '../src/core/safetensors.js';
import { loadClipVision } from '../src/vision/clip.js';
import { decodeImage, readImage, type RgbImage } from '../src/vision/image.js';
import { CLIP_MEAN, CLIP_STD, cropOffsets, preprocessImage, resizeBicubic, shortestSideSize } from '../src/vision/preprocess.js';
import { backendsUnderTest } from './backends.js';
import { assets, fixtures, maxAbsDiff } from './helpers.js';

const pre = readSafetensors(path.join(fixtures, 'clip-preprocess.safetensors'));
const u8 = (name: string): RgbImage => {
  const [h, w] = pre.info(name).shape;
  return { width: w, height: h, data: pre.tensorBytes(name) };
};
const clipCfg = (size: number) => ({ size, mean: CLIP_MEAN, std: CLIP_STD, layout: 'chw' as const, crop: 'hf' as const });
const twoDogs = path.join(assets, 'images/two-dogs.jpg');
const bird = path.join(assets, 'images/imagebind_bird_image.jpg');

describe('CLIP preprocessing matches PIL / HF CLIPImageProcessor', () => {
  it('PIL bicubic resize, bit for bit: photos (down 13x and 2x) and a crafted image (down and up)', () => {
    const rgb = u8('two_dogs_rgb');
    for (const [size, name] of [
      [32, 'two_dogs_resized_32'],
      [224, 'two_dogs_resized_224'],
    ] as const) {
      const want = u8(name);
      const { w, h } = shortestSideSize(rgb.width, rgb.height, size);
      assert.deepEqual([w, h], [want.width, want.height]);
      assert.deepEqual(resizeBicubic(rgb, w, h).data, want.data, name);
    }
    const crafted = u8('crafted_rgb');
    for (const [size, name] of [
      [3, 'crafted_resized_3'],
      [8, 'crafted_resized_8'],
    ] as const) {
      const want = u8(name);
      const { w, h } = shortestSideSize(crafted.width, crafted.height, size);
      assert.deepEqual(resizeBicubic(crafted, w, h).data, want.data, name);
      assert.ok(maxAbsDiff(preprocessImage(crafted, clipCfg(size)), pre.tensorF32(`crafted_pixels_${size}`)) <= 1e-6, `crafted_pixels_${size}`);
    }
    // from PIL's decoded pixels, the whole pipeline is within the fixture's 1e-6
    for (const size of [32, 224]) assert.ok(maxAbsDiff(preprocessImage(rgb, clipCfg(size)), pre.tensorF32(`two_dogs_pixels_${size}`)) <= 1e-6);
  });

  it('crop offsets: HF floors, OpenAI rounds half to even (two-dogs at 224: left 75 vs 76)', () => {
    const meta = JSON.parse(fs.readFileSync(path.join(fixtures, 'clip-preprocess.json'), 'utf8')) as {
      crops: Record<string, { resized_wh: [number, number]; crop_top_left_hf: [number, number]; crop_top_left_openai: [number, number] }>;
    };
    for (const [name, c] of Object.entries(meta.crops)) {
      const size = Number(name.split('_').at(-1));
      const [w, h] = c.resized_wh;
      const hf = cropOffsets(w, h, size, 'hf'),
        oa = cropOffsets(w, h, size, 'openai');
      assert.deepEqual([hf.top, hf.left], c.crop_top_left_hf, `${name} hf`);
      assert.deepEqual([oa.top, oa.left], c.crop_top_left_openai, `${name} openai`);
    }
  });

  it("our JPEG decoder (jpeg-js) against libjpeg-turbo: within a few levels; the pixels it gives stay close to PIL's", () => {
    const ours = readImage(twoDogs);
    const pil = u8('two_dogs_rgb');
    assert.deepEqual([ours.width, ours.height], [pil.width, pil.height]);
    let maxLevel = 0,
      sum = 0;
    for (let i = 0; i < pil.data.length; i++) {
      const d = Math.abs(ours.data[i] - pil.data[i]);
      maxLevel = Math.max(maxLevel, d);
      sum += d;
    }
    const meanLevel = sum / pil.data.length;
    // IDCT and chroma upsampling differ between decoders (the fixture README says "a few levels")
    assert.ok(maxLevel <= 40 && meanLevel < 1, `jpeg-js vs PIL: max ${maxLevel} levels, mean ${meanLevel.toFixed(3)}`);
    for (const [file, name] of [
      [twoDogs, 'two_dogs_pixels_224'],
      [bird, 'bird_pixels_224'],
      [bird, 'bird_pixels_32'],
    ] as const) {
      const size = Number(name.split('_').at(-1));
      const got = preprocessImage(readImage(file), clipCfg(size)),
        want = pre.tensorF32(name);
      let sumd = 0;
      for (let i = 0; i < got.length; i++) sumd += Math.abs(got[i] - want[i]);
      // one level is 1/255/std = 0.015: measured max 0.199 / 0.085 / 0.015, mean 0.0076 / 0.0075 / 0.0057
      assert.ok(maxAbsDiff(got, want) < 0.25 && sumd / got.length < 0.01, `${name}: max ${maxAbsDiff(got, want)}, mean ${sumd / got.length}`);
    }
  });

  it('PNG: RGBA, RGB, grey and grey+alpha all become RGB (alpha dropped, not composited, as PIL convert("RGB"))', () => {
    const w = 5,
      h = 3;
    const rgba = Buffer.alloc(w * h * 4);
    for (let i = 0; i < w * h; i++) rgba.set([i * 10, 255 - i * 7, (i * 37) % 256, i * 17], i * 4);
    const enc = (colorType: 0 | 2 | 4 | 6, data: Buffer): Uint8Array => {
      const p = new PNG({ width: w, height: h, colorType, inputColorType: 6, inputHasAlpha: true });
      data.copy(p.data);
      return PNG.sync.write(p, { colorType, inputColorType: 6, inputHasAlpha: true });
    };
    const rgb = decodeImage(enc(6, rgba), 'rgba.png');
    for (let i = 0; i < w * h; i++) assert.deepEqual([...rgb.data.subarray(i * 3, i * 3 + 3)], [...rgba.subarray(i * 4, i * 4 + 3)]);
    const opaque = Buffer.from(rgba);
    for (let i = 0; i < w * h; i++) opaque[i * 4 + 3] = 255; // pngjs's writer composites onto white when it drops alpha
    assert.deepEqual(decodeImage(enc(2, opaque), 'rgb.png').data, rgb.data);
    const grey = Buffer.from(rgba);
    for (let i = 0; i < w * h; i++) grey.fill(i * 13, i * 4, i * 4 + 3);
    const greyOpaque = Buffer.from(grey);
    for (let i = 0; i < w * h; i++) greyOpaque[i * 4 + 3] = 255;
    const g = decodeImage(enc(0, greyOpaque), 'grey.png');
    for (let i = 0; i < w * h; i++) assert.deepEqual([...g.data.subarray(i * 3, i * 3 + 3)], [i * 13, i * 13, i * 13]);
    assert.deepEqual(decodeImage(enc(4, grey), 'grey-alpha.png').data, g.data);
  });

  it('bad images: truncated, empty, not an image, GIF, a decompression bomb, a missing file: errors naming the file', () => {
    const jpg = fs.readFileSync(twoDogs);
    assert.throws(() => decodeImage(jpg.subarray(0, 200), 'cut.jpg'), /cut\.jpg: .*(JPEG|truncated)/);
    assert.throws(() => decodeImage(jpg.subarray(0, jpg.length >> 1), 'half.jpg'), /half\.jpg: cannot decode JPEG/);
    assert.throws(() => decodeImage(new Uint8Array(0), 'empty.png'), /empty\.png: not an image this library reads/);
    assert.throws(() => decodeImage(Buffer.from('{"a": 1}'), 'data.json'), /data\.json: not an image this library reads \(first bytes 7b 22 61 22\)/);
    assert.throws(() => decodeImage(Buffer.from('GIF89a\x01\x00\x01\x00'), 'x.gif'), /x\.gif: a GIF file; images must be JPEG or PNG/);
    // a PNG header claiming 60000 x 60000 pixels, and a JPEG frame header claiming 65000 x 65000: refused before decoding
    const png = Buffer.from(PNG.sync.write(Object.assign(new PNG({ width: 1, height: 1 }), { data: Buffer.alloc(4) })));
    png.writeUInt32BE(60000, 16);
    png.writeUInt32BE(60000, 20);
    assert.throws(() => decodeImage(png, 'bomb.png'), /bomb\.png: image is 60000x60000 = 3600000000 pixels, more than the limit/);
    const big = Buffer.from([0xff, 0xd8, 0xff, 0xc0, 0x00, 0x11, 0x08, 0xfd, 0xe8, 0xfd, 0xe8, 0x03, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]); // SOF0: 65000 x 65000
    assert.throws(() => decodeImage(big, 'bomb.jpg'), /bomb\.jpg: image is 65000x65000/);
    const pngCut = PNG.sync.write(Object.assign(new PNG({ width: 40, height: 40 }), { data: Buffer.alloc(6400, 200) }));
    assert.throws(() => decodeImage(pngCut.subarray(0, pngCut.length - 30), 'cut.png'), /cut\.png: cannot decode PNG/);
    const missing = path.join(os.tmpdir(), 'no-such-image-la.png');
    assert.throws(() => readImage(missing), new RegExp(`${missing.replace(/[.\\/]/g, '\\$&')}: cannot read image \\(ENOENT\\)`));
  });
});

describe('CLIP vision tower matches the reference (clip-tiny-encode)', () => {
  const enc = readSafetensors(path.join(fixtures, 'clip-tiny-encode.safetensors'));
  const tower = loadClipVision(path.join(fixtures, 'clip-tiny'));
  for (const id of backendsUnderTest()) {
    it(`${id}: embeddings, every hidden state, CLS after post_layernorm, pooled, image_embeds within 1e-4`, () => {
      const be = getBackend(id);
      const out = tower.encode(be, enc.tensorF32('pixels'), 2, true);
      assert.ok(maxAbsDiff(out.embeddings!, enc.tensorF32('embeddings')) < 1e-4, 'embeddings');
      const hidden = enc.tensorF32('hidden_states'); // (4, 2, 17, 48)
      const per = 2 * 17 * 48;
      out.hidden!.forEach((h, i) => assert.ok(maxAbsDiff(h, hidden.subarray(i * per, (i + 1) * per)) < 1e-4, `hidden[${i}]`));
      const cls = enc.tensorF32('cls_post_layernorm');
      out.cls.forEach((c, i) => assert.ok(maxAbsDiff(c, cls.subarray(i * 96, (i + 1) * 96)) < 1e-4, `cls[${i}]`));
      assert.ok(maxAbsDiff(out.pooled, enc.tensorF32('pooled')) < 1e-4, 'pooled');
      assert.ok(maxAbsDiff(out.imageEmbeds!, enc.tensorF32('image_embeds')) < 1e-4, 'image_embeds');
    });
  }

  it("the fixture pixels are ours: preprocessing PIL's decode of both photos at 32 px gives them within 1e-6", () => {
    const px = enc.tensorF32('pixels');
    assert.ok(maxAbsDiff(preprocessImage(u8('two_dogs_rgb'), clipCfg(32)), px.subarray(0, 3072)) <= 1e-6);
  });
});
