// Tests for checkpoint formats: safetensors read/write, HF directories (incl. RoPE row order,
// sharding, F16/BF16 sources), llama2.c fp32 / Q8_0 files, synthetic weights, and the error
// messages users see for bad inputs. Bad files are built under os.tmpdir(), never in ../shared.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { LlamaConfig } from '../src/core/config.js';
import { LlamaAdapterError } from '../src/core/errors.js';
import { bf16ToF32, f16ToF32, toBf16, toF16, type Matrix, type ModelWeights } from '../src/core/weights.js';
import { matrixToF32 } from '../src/core/quant.js';
import { fingerprint } from '../src/formats/fingerprint.js';
import { detectFormat, readModelFile } from '../src/formats/registry.js';
import { hfTensors, readHfModel, permuteToHfRows, writeHfModel, unpermuteHfRows, hfConfigJson } from '../src/formats/hf.js';
import { readLlama2c } from '../src/formats/llama2c.js';
import { readSafetensors, writeSafetensors, type WritableTensor } from '../src/core/safetensors.js';
import { syntheticModelFile } from '../src/formats/synthetic.js';
import { maxAbsDiff, stories260K, stories260Kq80, tinystories656k } from './helpers.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'llama-formats-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
let tmpCount = 0;
const tmpPath = (name: string): string => path.join(tmp, `${tmpCount++}-${name}`);

/** Every tensor of the weights as (canonical name, f32 values). */
function tensors(w: ModelWeights): [string, Float32Array][] {
  const out: [string, Float32Array][] = [['tok_embd', matrixToF32(w.tokEmbd)]];
  w.layers.forEach((l, i) => {
    out.push([`blk.${i}.attn_norm`, l.attnNorm], [`blk.${i}.ffn_norm`, l.ffnNorm]);
    for (const k of ['wq', 'wk', 'wv', 'wo', 'w1', 'w2', 'w3'] as const) out.push([`blk.${i}.${k}`, matrixToF32(l[k])]);
  });
  out.push(['output_norm', w.outputNorm], ['output', matrixToF32(w.output)]);
  return out;
}

function assertSameWeights(a: ModelWeights, b: ModelWeights, tol = 0): void {
  const ta = tensors(a);
  const tb = tensors(b);
  assert.equal(ta.length, tb.length);
  for (let i = 0; i < ta.length; i++) {
    assert.equal(ta[i][0], tb[i][0]);
    const d = maxAbsDiff(ta[i][1], tb[i][1]);
    assert.ok(d <= tol, `${ta[i][0]}: max |diff| ${d} > ${tol}`);
  }
}

/** Expect a LlamaAdapterError whose message matches every pattern. */
function assertUserError(fn: () => unknown, ...patterns: RegExp[]): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof LlamaAdapterError, `expected LlamaAdapterError, got ${String(e)}`);
    for (const p of patterns) assert.match(e.message, p);
    return true;
  });
}

const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** A safetensors file from a raw header string (or object) and data bytes. */
function rawSafetensors(file: string, header: unknown, data: Uint8Array = new Uint8Array(0)): void {
  const hb = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(hb.length));
  fs.writeFileSync(file, Buffer.concat([len, hb, data]));
}

/** Rewrite the JSON header of an existing safetensors file (data section kept). */
function editHeader(file: string, edit: (h: Record<string, Record<string, unknown>>) => void): void {
  const b = fs.readFileSync(file);
  const n = Number(b.readBigUInt64LE(0));
  const h = JSON.parse(b.subarray(8, 8 + n).toString()) as Record<string, Record<string, unknown>>;
  edit(h);
  rawSafetensors(file, h, b.subarray(8 + n));
}

const tinyShape = { dim: 32, hiddenDim: 48, nLayers: 3, nHeads: 4, nKvHeads: 2, vocabSize: 40, maxSeqLen: 64 };

/** A tiny HF directory (random weights) written with our own writer. */
function tinyHfDir(opts: { dtype?: 'F32' | 'BF16' | 'F16'; shards?: number; tied?: boolean } = {}): { dir: string; cfg: LlamaConfig; w: ModelWeights } {
  const ck = syntheticModelFile({ ...tinyShape, tiedEmbeddings: opts.tied ?? false }, 7);
  const dir = tmpPath('hf');
  writeHfModel(dir, ck.config, ck.weights, { dtype: opts.dtype, shards: opts.shards });
  return { dir, cfg: ck.config, w: ck.weights };
}

// ---------------------------------------------------------------- real checkpoints

describe('llama2.c checkpoints', () => {
  test('stories260K.bin loads', () => {
    const ck = readModelFile(stories260K);
    const c = ck.config;
    assert.equal(ck.format, 'llama2c-fp32');
    assert.deepEqual(ck.sourceDtypes, ['F32']);
    assert.deepEqual([c.dim, c.hiddenDim, c.nLayers, c.nHeads, c.nKvHeads, c.headDim, c.vocabSize, c.maxSeqLen], [64, 172, 5, 8, 4, 8, 512, 512]);
    assert.equal(c.tiedEmbeddings, true);
    assert.equal(ck.weights.output, ck.weights.tokEmbd);
    assert.deepEqual([c.normEps, c.ropeTheta, c.bosId, c.eosId, c.ropeScaling], [1e-5, 10000, 1, 2, null]);
    assert.match(ck.tokenizerPath ?? '', /tok512\.bin$/);
    assert.equal(ck.weights.layers[4].wk.rows, 32);
    assert.equal(ck.weights.layers[4].w2.cols, 172);
    assert.equal(ck.fingerprint, fingerprint(ck.weights));
    assert.match(ck.fingerprint, /^[0-9a-f]{16}$/);
  });

  test('stories260K_q80.bin loads and matches the fp32 file (it was dequantised from it)', () => {
    const q = readModelFile(stories260Kq80);
    const f = readModelFile(stories260K);
    assert.equal(q.format, 'llama2c-q80');
    assert.deepEqual(q.sourceDtypes, ['Q8_0', 'F32']);
    assert.deepEqual(q.config, f.config);
    assert.equal(q.weights.output, q.weights.tokEmbd);
    assertSameWeights(q.weights, f.weights, 1e-5);
    // in fact bit-identical: Q8_0 dequantisation int8 * scale in float32 is exactly what produced the .bin
    assertSameWeights(q.weights, f.weights, 0);
    assert.equal(q.fingerprint, f.fingerprint);
  });

  test('bf16 load rounds the matrices, keeps norms f32, and keeps the f32 fingerprint', () => {
    const f = readModelFile(stories260K);
    const b = readModelFile(stories260K, { dtype: 'bf16' });
    assert.equal(b.weights.tokEmbd.dtype, 'bf16');
    assert.equal(b.weights.layers[0].w2.dtype, 'bf16');
    assert.ok(b.weights.layers[0].attnNorm instanceof Float32Array);
    assert.deepEqual(b.weights.layers[1].wv.data, toBf16(matrixToF32(f.weights.layers[1].wv)));
    assert.deepEqual(b.weights.layers[2].ffnNorm, f.weights.layers[2].ffnNorm);
    assert.equal(b.fingerprint, f.fingerprint);
  });

  test('lazy reads at offsets give the same weights as the in-memory path', () => {
    for (const p of [stories260K, stories260Kq80]) {
      const eager = readLlama2c(p);
      const lazy = readLlama2c(p, { lazy: true });
      assertSameWeights(lazy.weights, eager.weights, 0);
      assert.equal(lazy.fingerprint, eager.fingerprint);
    }
  });

  test('unshared classifier (negative vocab) and the version-1 fp32 export load', () => {
    const ref = readModelFile(stories260K).weights;
    const bin = fs.readFileSync(stories260K);
    // legacy with a separate classifier: vocab -512 in the header, wcls appended
    const wcls = new Float32Array(512 * 64).map((_, i) => (i % 7) * 0.01);
    const unshared = Buffer.concat([bin, Buffer.from(wcls.buffer)]);
    unshared.writeInt32LE(-512, 20);
    const p1 = tmpPath('unshared.bin');
    fs.writeFileSync(p1, unshared);
    const u = readModelFile(p1);
    assert.equal(u.config.tiedEmbeddings, false);
    assert.notEqual(u.weights.output, u.weights.tokEmbd);
    assert.deepEqual(matrixToF32(u.weights.output), wcls);
    assert.equal(u.fingerprint, readModelFile(stories260K).fingerprint); // the output head is not hashed

    // version 1: magic, version, 7 params, shared flag, pad to 256; norms first, then matrices
    const c = readModelFile(stories260K).config;
    const head = Buffer.alloc(256);
    head.writeUInt32LE(0x616b3432, 0);
    head.writeInt32LE(1, 4);
    [c.dim, c.hiddenDim, c.nLayers, c.nHeads, c.nKvHeads, c.vocabSize, c.maxSeqLen].forEach((v, i) => head.writeInt32LE(v, 8 + 4 * i));
    head.writeUInt8(1, 36);
    const parts: Float32Array[] = [...ref.layers.map((l) => l.attnNorm), ...ref.layers.map((l) => l.ffnNorm), ref.outputNorm, matrixToF32(ref.tokEmbd)];
    for (const k of ['wq', 'wk', 'wv', 'wo', 'w1', 'w2', 'w3'] as const) parts.push(...ref.layers.map((l) => matrixToF32(l[k])));
    const p2 = tmpPath('v1.bin');
    fs.writeFileSync(p2, Buffer.concat([head, ...parts.map((a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength))]));
    const v1 = readModelFile(p2);
    assert.equal(v1.format, 'llama2c-fp32');
    assertSameWeights(v1.weights, ref, 0);
  });
});

describe('Hugging Face directories', () => {
  test('tinystories-656k loads (tied via lm_head.weight)', () => {
    const ck = readModelFile(tinystories656k);
    const c = ck.config;
    assert.equal(ck.format, 'hf-safetensors');
    assert.deepEqual(ck.sourceDtypes, ['F32']);
    assert.deepEqual([c.dim, c.nLayers, c.nHeads, c.nKvHeads, c.headDim, c.hiddenDim, c.vocabSize, c.maxSeqLen], [128, 2, 8, 4, 16, 384, 2048, 512]);
    assert.deepEqual([c.normEps, c.ropeTheta, c.bosId, c.eosId, c.ropeScaling], [1e-6, 10000, 1, 2, null]);
    assert.equal(c.tiedEmbeddings, true);
    assert.equal(ck.weights.output, ck.weights.tokEmbd);
    assert.match(ck.tokenizerPath ?? '', /tokenizer\.json$/);
    const raw = readSafetensors(path.join(tinystories656k, 'model.safetensors'));
    assert.equal(raw.metadata['model.embed_tokens.weight'], 'lm_head.weight');
    assert.deepEqual(matrixToF32(ck.weights.tokEmbd), raw.tensorF32('lm_head.weight'));
    assert.deepEqual(ck.weights.layers[1].w2.data, raw.tensorF32('model.layers.1.mlp.down_proj.weight'));
    assert.equal(ck.fingerprint, fingerprint(ck.weights));
  });

  test('bf16 load of tinystories-656k', () => {
    const f = readModelFile(tinystories656k);
    const b = readModelFile(tinystories656k, { dtype: 'bf16' });
    assert.equal(b.weights.layers[0].wq.dtype, 'bf16');
    assert.equal(b.weights.output, b.weights.tokEmbd);
    assert.ok(b.weights.outputNorm instanceof Float32Array);
    assert.deepEqual(b.weights.layers[0].wq.data, toBf16(matrixToF32(f.weights.layers[0].wq)));
    assert.equal(b.fingerprint, f.fingerprint);
  });

  test('RoPE row mapping on a hand-made example', () => {
    // 2 heads of size 8, 2 columns; value = 10 * HF row + column
    const hf = new Float32Array(16 * 2).map((_, i) => 10 * Math.floor(i / 2) + (i % 2));
    const meta = hf.slice();
    unpermuteHfRows(meta, 2, 8, 2);
    const rows = Array.from({ length: 16 }, (_, r) => meta[2 * r] / 10);
    // Meta row 2j <- HF row j, Meta row 2j+1 <- HF row hs/2 + j, per head
    assert.deepEqual(rows, [0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15]);
    assert.deepEqual(
      Array.from({ length: 16 }, (_, r) => meta[2 * r + 1] % 10),
      new Array(16).fill(1),
    );
    const back = meta.slice();
    permuteToHfRows(back, 2, 8, 2);
    assert.deepEqual(back, hf);
    const u16 = Uint16Array.from(hf);
    unpermuteHfRows(u16, 2, 8, 2);
    assert.deepEqual(Array.from(u16), Array.from(meta));
  });

  test('RoPE un-permutation: attention scores agree between HF rotate-half and our interleaved order', () => {
    const ck = readModelFile(tinystories656k);
    const { dim, nHeads, nKvHeads, headDim: hs } = ck.config;
    const raw = readSafetensors(path.join(tinystories656k, 'model.safetensors'));
    const wqHf = raw.tensorF32('model.layers.0.self_attn.q_proj.weight');
    const wkHf = raw.tensorF32('model.layers.0.self_attn.k_proj.weight');
    const wqOurs = matrixToF32(ck.weights.layers[0].wq);
    const wkOurs = matrixToF32(ck.weights.layers[0].wk);

    let s = 12345;
    const rand = (): number => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32) * 2 - 1;
    const x = Float64Array.from({ length: dim }, rand);
    const y = Float64Array.from({ length: dim }, rand);
    const matvec = (w: Float32Array, v: Float64Array): Float64Array => {
      const out = new Float64Array(w.length / dim);
      for (let r = 0; r < out.length; r++) for (let c = 0; c < dim; c++) out[r] += w[r * dim + c] * v[c];
      return out;
    };
    const rope = (v: Float64Array, pos: number, style: 'half' | 'interleaved'): Float64Array => {
      const out = new Float64Array(v.length);
      for (let h = 0; h < v.length / hs; h++) {
        for (let i = 0; i < hs / 2; i++) {
          const a = pos * 10000 ** ((-2 * i) / hs);
          const [i0, i1] = style === 'half' ? [h * hs + i, h * hs + i + hs / 2] : [h * hs + 2 * i, h * hs + 2 * i + 1];
          out[i0] = v[i0] * Math.cos(a) - v[i1] * Math.sin(a);
          out[i1] = v[i0] * Math.sin(a) + v[i1] * Math.cos(a);
        }
      }
      return out;
    };
    const scores = (wq: Float32Array, wk: Float32Array, style: 'half' | 'interleaved'): number[] => {
      const out: number[] = [];
      for (const [pq, pk] of [
        [7, 3],
        [100, 37],
        [5, 5],
      ]) {
        const q = rope(matvec(wq, x), pq, style);
        const k = rope(matvec(wk, y), pk, style);
        for (let h = 0; h < nHeads; h++) {
          const g = Math.floor(h / (nHeads / nKvHeads));
          let d = 0;
          for (let i = 0; i < hs; i++) d += q[h * hs + i] * k[g * hs + i];
          out.push(d);
        }
      }
      return out;
    };
    const ref = scores(wqHf, wkHf, 'half');
    const scale = Math.max(...ref.map(Math.abs));
    const diff = (a: number[]): number => Math.max(...a.map((v, i) => Math.abs(v - ref[i]))) / scale;
    assert.ok(diff(scores(wqOurs, wkOurs, 'interleaved')) < 1e-6, 'un-permuted weights + interleaved RoPE must give HF scores');
    // the test can tell a wrong answer: no permutation, or the permutation in the wrong direction
    assert.ok(diff(scores(wqHf, wkHf, 'interleaved')) > 1e-2);
    const wrongQ = wqHf.slice();
    const wrongK = wkHf.slice();
    permuteToHfRows(wrongQ, nHeads, hs, dim);
    permuteToHfRows(wrongK, nKvHeads, hs, dim);
    assert.ok(diff(scores(wrongQ, wrongK, 'interleaved')) > 1e-2);
  });

  test('writing an HF directory and loading it back gives the same weights (and fingerprint)', () => {
    const { dir, cfg, w } = tinyHfDir();
    const ck = readModelFile(dir);
    assert.deepEqual(ck.config, cfg);
    assertSameWeights(ck.weights, w, 0);
    assert.equal(ck.fingerprint, syntheticModelFile({ ...tinyShape, tiedEmbeddings: false }, 7).fingerprint);
    assert.equal(ck.tokenizerPath, null);
    const tied = tinyHfDir({ tied: true });
    const t = readModelFile(tied.dir);
    assert.equal(t.weights.output, t.weights.tokEmbd);
    assert.equal(readSafetensors(path.join(tied.dir, 'model.safetensors')).has('lm_head.weight'), false);
  });

  test('sharded checkpoint (index.json + 2 files) equals the unsharded one', () => {
    const one = tinyHfDir();
    const two = tinyHfDir({ shards: 2 });
    const files = fs
      .readdirSync(two.dir)
      .filter((f) => f.endsWith('.safetensors'))
      .sort();
    assert.deepEqual(files, ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']);
    const index = JSON.parse(fs.readFileSync(path.join(two.dir, 'model.safetensors.index.json'), 'utf8')) as {
      weight_map: Record<string, string>;
    };
    assert.equal(new Set(Object.values(index.weight_map)).size, 2);
    const a = readModelFile(one.dir);
    const b = readModelFile(two.dir);
    assertSameWeights(b.weights, a.weights, 0);
    assert.equal(b.fingerprint, a.fingerprint);
    const lazy = readHfModel(two.dir, { lazy: true });
    assertSameWeights(lazy.weights, a.weights, 0);
  });

  test('F16 and BF16 source tensors load', () => {
    const f16 = tinyHfDir({ dtype: 'F16' });
    const ck16 = readModelFile(f16.dir);
    assert.deepEqual(ck16.sourceDtypes, ['F16', 'F32']);
    const a = tensors(ck16.weights);
    const b = tensors(f16.w);
    for (let i = 0; i < a.length; i++) {
      for (let j = 0; j < a[i][1].length; j++) {
        const [u, v] = [a[i][1][j], b[i][1][j]];
        assert.ok(Math.abs(u - v) <= Math.abs(v) * 2 ** -11 + 2 ** -25, `${a[i][0]}[${j}]: ${u} vs ${v}`);
      }
    }

    const bf = tinyHfDir({ dtype: 'BF16' });
    const asF32 = readModelFile(bf.dir);
    const asBf16 = readModelFile(bf.dir, { dtype: 'bf16' });
    assert.deepEqual(asF32.sourceDtypes, ['BF16', 'F32']);
    const rounded = (m: Matrix): Float32Array => bf16ToF32(toBf16(matrixToF32(m)));
    assert.deepEqual(matrixToF32(asF32.weights.layers[2].wq), rounded(bf.w.layers[2].wq));
    assert.deepEqual(matrixToF32(asF32.weights.output), rounded(bf.w.output));
    assert.equal(asBf16.weights.layers[2].wk.dtype, 'bf16');
    assert.deepEqual(asBf16.weights.layers[2].wk.data, toBf16(matrixToF32(bf.w.layers[2].wk)));
    assert.equal(asBf16.fingerprint, asF32.fingerprint);
    assert.equal(fingerprint(asBf16.weights), asF32.fingerprint);
  });

  test('config.json mapping: defaults, eos lists, generation_config, llama3 rope scaling', () => {
    const { dir, cfg } = tinyHfDir();
    const edit = (f: (c: Record<string, unknown>) => void, gen?: unknown): LlamaConfig => {
      const c = hfConfigJson(cfg);
      f(c);
      fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(c));
      if (gen) fs.writeFileSync(path.join(dir, 'generation_config.json'), JSON.stringify(gen));
      return readModelFile(dir).config;
    };
    const c1 = edit((c) => {
      delete c.head_dim;
      delete c.rope_theta;
      c.eos_token_id = [3, 2];
      c.rope_scaling = { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 };
    });
    assert.equal(c1.headDim, 8);
    assert.equal(c1.ropeTheta, 10000);
    assert.equal(c1.eosId, 3);
    assert.deepEqual(c1.ropeScaling, { factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPos: 8192 });
    const c2 = edit(
      (c) => {
        delete c.bos_token_id;
        c.eos_token_id = null;
      },
      { bos_token_id: 5, eos_token_id: [6] },
    );
    assert.deepEqual([c2.bosId, c2.eosId], [5, 6]);
    fs.rmSync(path.join(dir, 'generation_config.json'));
    const c3 = edit((c) => {
      delete c.bos_token_id;
      delete c.eos_token_id;
    });
    assert.deepEqual([c3.bosId, c3.eosId], [1, 2]);
  });
});

// ---------------------------------------------------------------- safetensors

describe('safetensors', () => {
  test('write then read round trip: F32, I32, BF16, F16 and metadata', () => {
    const f32 = new Float32Array([1.5, -2.25, Math.PI, 0, -0, 1e-30, 3.4e38, NaN]);
    const i32 = new Int32Array([0, -1, 2147483647, -2147483648, 42, 7]);
    const bf16 = new Uint16Array([0x3f80, 0xbf80, 0x7f80, 0x0001]);
    const f16 = new Uint16Array([0x3c00, 0xc000, 0x0001, 0x7bff, 0x7c00]);
    const list: WritableTensor[] = [
      { name: 'a.f32', dtype: 'F32', shape: [2, 4], data: f32 },
      { name: 'b.i32', dtype: 'I32', shape: [3, 2], data: i32 },
      { name: 'c.bf16', dtype: 'BF16', shape: [4], data: bf16 },
      { name: 'd.f16', dtype: 'F16', shape: [5], data: f16 },
      { name: 'e.scalar', dtype: 'F32', shape: [], data: new Float32Array([9]) },
      { name: 'f.empty', dtype: 'F32', shape: [0, 3], data: new Float32Array(0) },
    ];
    const meta = { format: 'pt', note: 'ünïcode ✓', empty: '' };
    const file = tmpPath('rt.safetensors');
    writeSafetensors(file, list, meta);
    assert.deepEqual(
      fs.readdirSync(tmp).filter((f) => f.includes('.tmp-')),
      [],
    );
    const bytes = fs.readFileSync(file);
    assert.equal((8 + Number(bytes.readBigUInt64LE(0))) % 8, 0, 'header padded to 8-byte alignment');

    for (const lazy of [false, true]) {
      const r = readSafetensors(file, { lazy });
      assert.deepEqual(r.metadata, meta);
      assert.deepEqual(
        r.names(),
        list.map((t) => t.name),
      );
      assert.deepEqual(r.info('b.i32'), { dtype: 'I32', shape: [3, 2] });
      for (const t of list) assert.deepEqual(Buffer.from(r.tensorBytes(t.name)), Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength));
      assert.deepEqual(r.tensorF32('a.f32'), f32);
      assert.deepEqual(r.tensorInt32('b.i32'), i32);
      assert.deepEqual(r.tensorBf16('c.bf16'), bf16);
      assert.deepEqual(r.tensorF32('c.bf16'), bf16ToF32(bf16));
      assert.deepEqual(r.tensorF32('d.f16'), new Float32Array([1, -2, 2 ** -24, 65504, Infinity]));
      assert.deepEqual(r.tensorBf16('a.f32'), toBf16(f32));
      assert.deepEqual(r.tensorF32('e.scalar'), new Float32Array([9]));
      assert.equal(r.tensorF32('f.empty').length, 0);
      // written again from what was read: the same bytes
      const again = tmpPath('rt2.safetensors');
      writeSafetensors(
        again,
        [
          { name: 'a.f32', dtype: 'F32', shape: [2, 4], data: r.tensorF32('a.f32') },
          { name: 'b.i32', dtype: 'I32', shape: [3, 2], data: r.tensorInt32('b.i32') },
          { name: 'c.bf16', dtype: 'BF16', shape: [4], data: r.tensorBf16('c.bf16') },
          { name: 'd.f16', dtype: 'F16', shape: [5], data: new Uint16Array(r.tensorBytes('d.f16').slice().buffer) },
          { name: 'e.scalar', dtype: 'F32', shape: [], data: r.tensorF32('e.scalar') },
          { name: 'f.empty', dtype: 'F32', shape: [0, 3], data: r.tensorF32('f.empty') },
        ],
        r.metadata,
      );
      assert.deepEqual(fs.readFileSync(again), bytes);
    }
  });

  test('unaligned tensors are copied, I64 narrows to int32, F16 conversion rounds to nearest even', () => {
    const file = tmpPath('unaligned.safetensors');
    const data = new Uint8Array(2 + 16 + 16);
    const dv = new DataView(data.buffer);
    dv.setUint16(0, 0x3f80, true); // BF16 1.0 at offset 0, then F32 at offset 2 (unaligned), then I64
    dv.setFloat32(2, 0.5, true);
    dv.setFloat32(6, -3, true);
    dv.setFloat32(10, 7.25, true);
    dv.setFloat32(14, 1e-3, true);
    dv.setBigInt64(18, -5n, true);
    dv.setBigInt64(26, 123456789n, true);
    rawSafetensors(
      file,
      {
        one: { dtype: 'BF16', shape: [1], data_offsets: [0, 2] },
        x: { dtype: 'F32', shape: [4], data_offsets: [2, 18] },
        ids: { dtype: 'I64', shape: [2], data_offsets: [18, 34] },
      },
      data,
    );
    const r = readSafetensors(file);
    assert.deepEqual(r.tensorF32('x'), new Float32Array([0.5, -3, 7.25, 1e-3]));
    assert.deepEqual(r.tensorInt32('ids'), new Int32Array([-5, 123456789]));
    assert.deepEqual(r.tensorF32('one'), new Float32Array([1]));
    assertUserError(() => r.tensorInt32('x'), /tensor "x" has dtype F32, which cannot be read as integers/);
    // f32 -> f16 -> f32 is exact on f16 values, ties go to even, overflow -> inf
    const vals = new Float32Array([1, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 65520, -(2 ** -25), 2 ** -25 * 3, 2 ** -14]);
    assert.deepEqual(f16ToF32(toF16(vals)), new Float32Array([1, 1, 1 + 2 ** -9, Infinity, -0, 2 ** -23, 2 ** -14]));
  });
});

// ---------------------------------------------------------------- synthetic

describe('synthetic checkpoints', () => {
  test('deterministic, N(0, 0.02), unit norms; bf16 is the rounded f32 with the same fingerprint', () => {
    const shape = { dim: 64, hiddenDim: 96, nLayers: 2, nHeads: 4, nKvHeads: 1, vocabSize: 100 };
    const a = syntheticModelFile(shape, 1);
    const b = syntheticModelFile(shape, 1);
    const c = syntheticModelFile(shape, 2);
    const h = syntheticModelFile(shape, 1, 'bf16');
    assertSameWeights(a.weights, b.weights, 0);
    assert.equal(a.fingerprint, b.fingerprint);
    assert.notEqual(a.fingerprint, c.fingerprint);
    assert.equal(h.fingerprint, a.fingerprint);
    assert.equal(h.weights.layers[1].w2.dtype, 'bf16');
    assert.deepEqual(h.weights.layers[1].w2.data, toBf16(matrixToF32(a.weights.layers[1].w2)));
    assert.equal(a.weights.layers[0].wk.rows, 16);
    assert.notEqual(a.weights.output, a.weights.tokEmbd);
    assert.ok(a.weights.layers[0].ffnNorm.every((v) => v === 1));
    const e = matrixToF32(a.weights.tokEmbd);
    const mean = e.reduce((s, v) => s + v, 0) / e.length;
    const std = Math.sqrt(e.reduce((s, v) => s + (v - mean) ** 2, 0) / e.length);
    assert.ok(Math.abs(mean) < 0.002 && Math.abs(std - 0.02) < 0.001, `mean ${mean} std ${std}`);
    // a tensor depends only on (seed, name): more layers keep the first ones
    const deeper = syntheticModelFile({ ...shape, nLayers: 3 }, 1);
    assert.deepEqual(deeper.weights.layers[1].wq.data, a.weights.layers[1].wq.data);
    assertUserError(() => syntheticModelFile({ ...shape, nHeads: 5 }, 1), /dim 64 is not divisible by nHeads 5/);
  });

  test('f16: the rounded f32; quantized: deterministic blocks drawn from a pool quantized from N(0, 0.02)', () => {
    const shape = { dim: 256, hiddenDim: 512, nLayers: 1, nHeads: 4, nKvHeads: 2, vocabSize: 64 };
    const a = syntheticModelFile(shape, 1);
    const h = syntheticModelFile(shape, 1, 'f16');
    assert.equal(h.fingerprint, a.fingerprint);
    assert.deepEqual(h.weights.layers[0].w1.data, toF16(matrixToF32(a.weights.layers[0].w1)));
    const q = syntheticModelFile(shape, 1, 'q4_k');
    assert.deepEqual(q.weights.layers[0].w1.data, syntheticModelFile(shape, 1, 'q4_k').weights.layers[0].w1.data);
    assert.notDeepEqual(q.weights.layers[0].w1.data, q.weights.layers[0].w3.data);
    const e = matrixToF32(q.weights.layers[0].w1);
    const mean = e.reduce((s, v) => s + v, 0) / e.length;
    const std = Math.sqrt(e.reduce((s, v) => s + (v - mean) ** 2, 0) / e.length);
    assert.ok(Math.abs(mean) < 0.002 && Math.abs(std - 0.02) < 0.002, `mean ${mean} std ${std}`);
  });
});

// ---------------------------------------------------------------- errors

describe('errors name the file and the problem', () => {
  test('missing path', () => {
    const p = path.join(tmp, 'no-such-model.bin');
    assertUserError(() => readModelFile(p), new RegExp(`^${esc(p)}: no such file or directory$`));
  });

  test('a bare .safetensors file asks for its directory', () => {
    const p = path.join(tinystories656k, 'model.safetensors');
    assertUserError(() => readModelFile(p), /model\.safetensors: .*pass the directory/);
    assert.equal(detectFormat(tinystories656k), 'hf-safetensors');
  });

  test('truncated safetensors (header length larger than the file)', () => {
    const good = tmpPath('good.safetensors');
    writeSafetensors(good, [{ name: 'w', dtype: 'F32', shape: [4, 4], data: new Float32Array(16) }], {});
    const bad = tmpPath('truncated.safetensors');
    fs.writeFileSync(bad, fs.readFileSync(good).subarray(0, 40));
    assertUserError(() => readSafetensors(bad), /truncated\.safetensors: header length \d+ is larger than the file \(40 bytes\)/);
    const tiny = tmpPath('tiny.safetensors');
    fs.writeFileSync(tiny, Buffer.from([1, 2, 3]));
    assertUserError(() => readSafetensors(tiny), /tiny\.safetensors: file is 3 bytes, too short/);
  });

  test('corrupt header JSON, non-object header, missing fields', () => {
    const f1 = tmpPath('corrupt.safetensors');
    rawSafetensors(f1, '{"w": {"dtype": "F32", "shape": [1], ');
    assertUserError(() => readSafetensors(f1), /corrupt\.safetensors: header is not valid JSON/);
    const f2 = tmpPath('array.safetensors');
    rawSafetensors(f2, '[1, 2]');
    assertUserError(() => readSafetensors(f2), /array\.safetensors: header is not a JSON object \(got an array\)/);
    const f3 = tmpPath('nodtype.safetensors');
    rawSafetensors(f3, { w: { shape: [1], data_offsets: [0, 4] } }, new Uint8Array(4));
    assertUserError(() => readSafetensors(f3), /nodtype\.safetensors: tensor "w": missing "dtype"/);
    const f4 = tmpPath('badshape.safetensors');
    rawSafetensors(f4, { w: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, new Uint8Array(4));
    assertUserError(() => readSafetensors(f4), /badshape\.safetensors: tensor "w": "shape" is \[-1\]/);
    const f5 = tmpPath('badmeta.safetensors');
    rawSafetensors(f5, { __metadata__: { n: 3 } });
    assertUserError(() => readSafetensors(f5), /badmeta\.safetensors: "__metadata__" field "n" is 3, expected a string/);
  });

  test('offsets outside the file, inconsistent with the shape, or overlapping', () => {
    const name = 'model.layers.0.self_attn.q_proj.weight';
    const f1 = tmpPath('outside.safetensors');
    rawSafetensors(f1, { [name]: { dtype: 'F32', shape: [4], data_offsets: [0, 99999999] } }, new Uint8Array(16));
    assertUserError(
      () => readSafetensors(f1),
      new RegExp(`outside\\.safetensors: tensor "${esc(name)}": data_offsets \\[0, 99999999\\] point outside the file \\(data section is 16 bytes\\)`),
    );
    const f2 = tmpPath('size.safetensors');
    rawSafetensors(f2, { w: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 12] } }, new Uint8Array(16));
    assertUserError(
      () => readSafetensors(f2),
      /size\.safetensors: tensor "w": data_offsets \[0, 12\] hold 12 bytes but dtype F32 shape \[2, 2\] needs 16 bytes/,
    );
    const f3 = tmpPath('overlap.safetensors');
    rawSafetensors(f3, { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, new Uint8Array(12));
    assertUserError(() => readSafetensors(f3), /overlap\.safetensors: tensor "b" .* overlaps the data after tensor "a"/);
    // the tensors must tile the data section exactly: no gap, no trailing byte
    const f4 = tmpPath('gap.safetensors');
    rawSafetensors(f4, { a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] } }, new Uint8Array(12));
    assertUserError(() => readSafetensors(f4), /gap\.safetensors: tensor "b" .* leaves a gap of unused bytes after tensor "a"/);
    const f5 = tmpPath('trailing.safetensors');
    rawSafetensors(f5, { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, new Uint8Array(9));
    assertUserError(() => readSafetensors(f5), /trailing\.safetensors: the tensors cover 8 bytes of the 9-byte data section/);
  });

  test('unknown and unsupported dtypes', () => {
    const f1 = tmpPath('q9.safetensors');
    rawSafetensors(f1, { w: { dtype: 'Q9', shape: [4], data_offsets: [0, 4] } }, new Uint8Array(4));
    assertUserError(() => readSafetensors(f1), /q9\.safetensors: tensor "w": unknown dtype "Q9"/);
    // F8_E4M3 is a valid safetensors dtype that we cannot use for weights
    const { dir } = tinyHfDir();
    const st = path.join(dir, 'model.safetensors');
    const name = 'model.layers.1.mlp.gate_proj.weight';
    editHeader(st, (h) => {
      h[name].dtype = 'F8_E4M3';
      h[name].shape = [48, 32 * 4];
    });
    assertUserError(() => readSafetensors(st).tensorF32(name), /F8_E4M3, which cannot be read as floating point/);
    assertUserError(() => readModelFile(dir), new RegExp(`model\\.safetensors: tensor "${esc(name)}" has dtype F8_E4M3, which is not supported`));
  });

  test('missing tensor and mis-shaped tensor in an HF directory', () => {
    const ck = syntheticModelFile(tinyShape, 3);
    const dir = tmpPath('hf-missing');
    writeHfModel(dir, ck.config, ck.weights);
    const all = hfTensors(ck.config, ck.weights);
    const missing = 'model.layers.1.mlp.up_proj.weight';
    writeSafetensors(
      path.join(dir, 'model.safetensors'),
      all.filter((t) => t.name !== missing),
      {},
    );
    assertUserError(
      () => readModelFile(dir),
      new RegExp(`model\\.safetensors: missing tensor "${esc(missing)}" \\(expected shape \\[48, 32\\] = \\(intermediate_size, hidden_size\\)\\)`),
    );

    const wrong = 'model.layers.2.self_attn.k_proj.weight';
    const reshaped = all.map((t): WritableTensor => (t.name === wrong && t.dtype === 'F32' ? { ...t, shape: [32, 16] } : t));
    writeSafetensors(path.join(dir, 'model.safetensors'), reshaped, {});
    assertUserError(() => readModelFile(dir), new RegExp(`model\\.safetensors: tensor "${esc(wrong)}" has shape \\[32, 16\\], expected \\[16, 32\\]`));

    // untied config without lm_head
    writeSafetensors(
      path.join(dir, 'model.safetensors'),
      all.filter((t) => t.name !== 'lm_head.weight'),
      {},
    );
    assertUserError(() => readModelFile(dir), /missing tensor "lm_head\.weight".*tie_word_embeddings is false/);

    // sharded: a tensor the index does not list, and an index pointing at a missing shard
    const sh = tinyHfDir({ shards: 2 });
    const idxFile = path.join(sh.dir, 'model.safetensors.index.json');
    const idx = JSON.parse(fs.readFileSync(idxFile, 'utf8')) as { weight_map: Record<string, string> };
    delete idx.weight_map['model.norm.weight'];
    fs.writeFileSync(idxFile, JSON.stringify(idx));
    assertUserError(() => readModelFile(sh.dir), /model\.safetensors\.index\.json: weight_map: missing tensor "model\.norm\.weight"/);
    idx.weight_map['model.norm.weight'] = 'model-00003-of-00002.safetensors';
    fs.writeFileSync(idxFile, JSON.stringify(idx));
    assertUserError(() => readModelFile(sh.dir), /index\.json: maps tensor "model\.norm\.weight" to model-00003-of-00002\.safetensors, which does not exist/);
  });

  test('config.json problems: architecture, rope scaling, missing fields, no weights', () => {
    const { dir, cfg } = tinyHfDir();
    const cfgFile = path.join(dir, 'config.json');
    const write = (f: (c: Record<string, unknown>) => void): void => {
      const c = hfConfigJson(cfg);
      f(c);
      fs.writeFileSync(cfgFile, JSON.stringify(c));
    };
    write((c) => {
      c.architectures = ['GPT2LMHeadModel'];
      c.model_type = 'gpt2';
    });
    assertUserError(() => readModelFile(dir), /config\.json: unsupported architecture GPT2LMHeadModel \(expected LlamaForCausalLM\)/);
    write((c) => {
      c.rope_scaling = { type: 'linear', factor: 2 };
    });
    assertUserError(() => readModelFile(dir), /config\.json: rope_scaling type "linear" is not supported/);
    write((c) => {
      delete c.hidden_size;
    });
    assertUserError(() => readModelFile(dir), /config\.json: missing "hidden_size"/);
    write((c) => {
      c.num_key_value_heads = 3;
    });
    assertUserError(() => readModelFile(dir), /config\.json: num_attention_heads 4 is not a multiple of num_key_value_heads 3/);
    fs.writeFileSync(cfgFile, '{ nope');
    assertUserError(() => readModelFile(dir), /config\.json: not valid JSON/);
    write(() => undefined);
    fs.rmSync(path.join(dir, 'model.safetensors'));
    assertUserError(() => readModelFile(dir), /: no model\.safetensors or model\.safetensors\.index\.json/);
    const empty = tmpPath('empty-dir');
    fs.mkdirSync(empty);
    assertUserError(() => readModelFile(empty), /empty-dir: not a Hugging Face model directory \(no config\.json\)/);
  });

  test('truncated, padded or nonsensical llama2.c files', () => {
    const bin = fs.readFileSync(stories260K);
    const t = tmpPath('stories-truncated.bin');
    fs.writeFileSync(t, bin.subarray(0, 500000));
    assertUserError(
      () => readModelFile(t),
      /stories-truncated\.bin: file is 500000 bytes but its llama2\.c legacy fp32 header \(dim 64, .*\) implies 1056540 bytes \(truncated\)/,
    );
    const g = tmpPath('stories-garbage.bin');
    fs.writeFileSync(g, Buffer.concat([bin, Buffer.alloc(12)]));
    assertUserError(() => readModelFile(g), /stories-garbage\.bin: file is 1056552 bytes .* implies 1056540 bytes \(12 bytes of trailing data\)/);
    const q = tmpPath('q80-truncated.bin');
    fs.writeFileSync(q, fs.readFileSync(stories260Kq80).subarray(0, 1000));
    assertUserError(
      () => readModelFile(q),
      /q80-truncated\.bin: file is 1000 bytes but its llama2\.c version-2 header .*group_size 32\) implies 294816 bytes \(truncated\)/,
    );
    const n = tmpPath('nonsense.bin');
    const odd = Buffer.from(bin.subarray(0, 1000));
    odd.writeInt32LE(65, 0); // dim 65 with 8 heads
    fs.writeFileSync(n, odd);
    assertUserError(() => readModelFile(n), /nonsense\.bin: not a valid llama2\.c checkpoint: dim 65 is not divisible by n_heads 8/);
    const txt = tmpPath('notes.txt');
    fs.writeFileSync(txt, 'hello, this is not a model at all');
    assertUserError(() => readModelFile(txt), /notes\.txt: not a valid llama2\.c checkpoint/);
    const v3 = tmpPath('v3.bin');
    const h = Buffer.alloc(300);
    h.writeUInt32LE(0x616b3432, 0);
    h.writeInt32LE(3, 4);
    fs.writeFileSync(v3, h);
    assertUserError(() => readModelFile(v3), /v3\.bin: llama2\.c export version 3 is not supported/);
    assertUserError(() => readModelFile(stories260K, { dtype: 'q5_k' }), /dtype "q5_k" is not supported/);
  });
});
