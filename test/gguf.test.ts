// GGUF: the reader against llama.cpp's own files and tools (the vocab-only GGUF files and their
// tokenizer test vectors, gguf-py's GGUFReader / dequantizers / quantizers, all taken at test
// time from the llama.cpp source node-llama-cpp ships), the writer against node-llama-cpp (which
// loads our files and decodes greedily) and against our safetensors path, and bad input.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { LlamaAdapterError } from '../src/core/errors.js';
import { GgufType, readGguf, writeGguf } from '../src/core/gguf.js';
import { dequantizeRow, matrixToF32, QUANT_TYPES, quantRowBytes } from '../src/core/quant.js';
import { bf16ToF32, f16ToF32, type Matrix } from '../src/core/weights.js';
import { GGUF_WRITE_TYPES, readGgufModel, writeGgufModel } from '../src/formats/gguf.js';
import { readModelFile } from '../src/formats/registry.js';
import { loadModel } from '../src/model/load.js';
import { ggufTokenizer } from '../src/tokenizer/gguf.js';
import { loadTokenizer } from '../src/tokenizer/load.js';
import { assets, maxAbs, maxAbsDiff, tinystories656k } from './helpers.js';
import { llamaCppSource, vocabTests } from './llama-cpp-source.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'la-gguf-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
const src = llamaCppSource();
const tinyRandom = path.join(assets, 'models/tiny-random-llama/tiny-random-llama.gguf');
const PY = '/usr/bin/python3';
const hasPy = spawnSync(PY, ['-c', 'import numpy'], { stdio: 'ignore' }).status === 0;

describe('GGUF tokenizer vs llama.cpp test vectors', { skip: src.dir ? false : src.why }, () => {
  for (const name of ['llama-spm', 'llama-bpe']) {
    test(`ggml-vocab-${name}.gguf: every .inp/.out vector`, () => {
      const base = path.join(src.dir as string, 'models', `ggml-vocab-${name}.gguf`);
      const tok = ggufTokenizer(readGguf(base, { lazy: true }));
      const tests = vocabTests(`${base}.inp`, `${base}.out`);
      assert.ok(tests.length >= 40, `${tests.length} vectors`);
      for (const [text, ids] of tests) {
        assert.deepEqual(tok.encode(text), ids, `encode ${JSON.stringify(text)}`);
        // llama.cpp's test also detokenizes: our text of the expected ids is our text of our ids
        assert.equal(tok.decode(tok.encode(text)), tok.decode(ids));
      }
    });
  }
});

describe('GGUF reader', () => {
  test('tiny-random-llama (a real llama.cpp file, F16): config, tokenizer, and node-llama-cpp greedy tokens', async () => {
    const m = await loadModel(tinyRandom, { backend: 'ts' });
    assert.equal(m.info.format, 'gguf');
    assert.deepEqual(m.info.sourceDtypes, ['F16', 'F32']);
    assert.equal(m.config.dim, 8);
    assert.equal(m.config.vocabSize, 32000);
    assert.equal(m.config.tiedEmbeddings, false);
    // its vocabulary is Llama 2's: same ids as SentencePiece's tokenizer.model
    const sp = await loadTokenizer(path.join(assets, 'tokenizers/llama2/tokenizer.model'));
    for (const s of ['Hello world', ' this is 🦙.cpp', 'Äpfel und Birnen']) assert.deepEqual(m.tokenizer.encode(s), sp.encode(s));
  });

  test('gguf-py (llama.cpp) reads and dequantizes what we write, value for value', { skip: !hasPy || !src.dir }, async () => {
    const base = await loadModel(tinystories656k, { backend: 'ts' });
    for (const type of GGUF_WRITE_TYPES) {
      const file = path.join(tmp, `py-${type}.gguf`);
      writeGgufModel(file, base.config, base.weights, base.tokenizer, type);
      const r = spawnSync(PY, [path.join(tmp, 'dq.py'), src.dir as string, file, `${file}.f32`], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      const theirs = new Float32Array(fs.readFileSync(`${file}.f32`).buffer.slice(0));
      const ours = readGgufModel(file);
      const f = readGguf(file);
      let off = 0;
      for (const t of f.tensors) {
        const n = t.dims.reduce((a, b) => a * b, 1);
        const role = t.name.replace(/\.weight$/, '');
        const w =
          role === 'token_embd' ? ours.weights.tokEmbd : role === 'output_norm' ? ours.weights.outputNorm : role === 'output' ? ours.weights.output : null;
        const layer = /^blk\.(\d+)\.(\w+)$/.exec(role);
        const fields: Record<string, string> = {
          attn_norm: 'attnNorm',
          attn_q: 'wq',
          attn_k: 'wk',
          attn_v: 'wv',
          attn_output: 'wo',
          ffn_norm: 'ffnNorm',
          ffn_gate: 'w1',
          ffn_up: 'w3',
          ffn_down: 'w2',
        };
        const v = w ?? (layer ? (ours.weights.layers[Number(layer[1])] as unknown as Record<string, Matrix | Float32Array>)[fields[layer[2]]] : null);
        assert.ok(v, t.name);
        const mine = v instanceof Float32Array ? v : matrixToF32(v);
        assert.deepEqual(mine, theirs.subarray(off, off + n), `${type} ${t.name}`);
        off += n;
      }
      assert.equal(off, theirs.length);
    }
  });

  test("gguf-py's writer and quantizers (Q8_0, Q4_0, Q4_1, Q5_0, F16, BF16): our reader and dequantizer give its values", { skip: !hasPy || !src.dir }, () => {
    const file = path.join(tmp, 'from-py.gguf');
    const r = spawnSync(PY, [path.join(tmp, 'wr.py'), src.dir as string, file, `${file}.f32`], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const theirs = new Float32Array(fs.readFileSync(`${file}.f32`).buffer.slice(0));
    const f = readGguf(file);
    assert.equal(f.metadata.get('general.architecture')?.value, 'test');
    let off = 0;
    for (const t of f.tensors) {
      const n = t.dims.reduce((a, b) => a * b, 1);
      const name = t.name.split('.')[0];
      const out = new Float32Array(n);
      if (name === 'F16' || name === 'BF16') {
        const u = f.source.u16(t.offset, n);
        out.set(name === 'F16' ? f16ToF32(u) : bf16ToF32(u));
      } else {
        const dt = name.toLowerCase() as keyof typeof QUANT_TYPES;
        dequantizeRow(dt, f.source.bytes(t.offset, t.bytes), 0, out, 0, n);
        assert.equal(t.bytes, (n / 32) * QUANT_TYPES[dt].bytes);
      }
      assert.deepEqual(out, theirs.subarray(off, off + n), t.name);
      off += n;
    }
    assert.equal(f.tensors.length, 6);
  });
});

let tokCache: Awaited<ReturnType<typeof loadTokenizer>> | null = null;

test.before(async () => {
  tokCache = await loadTokenizer(path.join(tinystories656k, 'tokenizer.json'));
  fs.writeFileSync(
    path.join(tmp, 'dq.py'),
    `import sys, numpy as np
sys.path.insert(0, sys.argv[1] + '/gguf-py')
from gguf import GGUFReader, quants
r = GGUFReader(sys.argv[2])
with open(sys.argv[3], 'wb') as out:
    for t in r.tensors:
        out.write(quants.dequantize(t.data, t.tensor_type).astype(np.float32).reshape(-1).tobytes())
`,
  );
  fs.writeFileSync(
    path.join(tmp, 'wr.py'),
    `import sys, numpy as np
sys.path.insert(0, sys.argv[1] + '/gguf-py')
from gguf import GGUFWriter, GGMLQuantizationType as T, quants
rng = np.random.default_rng(7)
w = GGUFWriter(sys.argv[2], 'test')
vals = []
for name, t in [('F16', T.F16), ('BF16', T.BF16), ('Q8_0', T.Q8_0), ('Q4_0', T.Q4_0), ('Q4_1', T.Q4_1), ('Q5_0', T.Q5_0)]:
    x = (rng.standard_normal((4, 64)) * 0.1).astype(np.float32)
    if t == T.F16:
        q = x.astype(np.float16); shape = None
    else:
        q = quants.quantize(x, t)
    w.add_tensor(name + '.weight', q, raw_dtype=None if t == T.F16 else t)
    vals.append(quants.dequantize(q if t != T.F16 else q, t).astype(np.float32).reshape(-1))
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
open(sys.argv[3], 'wb').write(np.concatenate(vals).tobytes())
`,
  );
});

describe('GGUF writer', () => {
  test('tinystories-656k -> GGUF F32: the same logits as from the safetensors directory (1e-5), same fingerprint, tied output', async () => {
    const hf = await loadModel(tinystories656k, { backend: 'ts' });
    const file = path.join(tmp, 'ts-f32.gguf');
    writeGgufModel(file, hf.config, hf.weights, hf.tokenizer, 'f32');
    const g = await loadModel(file, { backend: 'ts' });
    assert.equal(g.config.tiedEmbeddings, true);
    assert.equal(g.fingerprint, hf.fingerprint);
    const ids = [[1, ...hf.tokenizer.encode('Once upon a time, there was a little dog named Max.')]];
    assert.deepEqual(g.tokenizer.encode('Lily saw a big ball.'), hf.tokenizer.encode('Lily saw a big ball.'));
    const a = hf.forward(ids);
    const b = g.forward(ids);
    assert.ok(maxAbsDiff(a, b) <= 1e-5 * Math.max(1, maxAbs(a)), `logits differ by ${maxAbsDiff(a, b)}`);
  });

  test('F16 GGUF with dtype f16: weights stay halves (views on the file), the logits of the f32 load (TS exact, native 1e-5), same fingerprint', async () => {
    const hf = await loadModel(tinystories656k, { backend: 'ts' });
    const file = path.join(tmp, 'ts-f16.gguf');
    writeGgufModel(file, hf.config, hf.weights, hf.tokenizer, 'f16');
    const ids = [[1, ...hf.tokenizer.encode('Once upon a time, there was a little dog named Max.')]];
    const f32 = await loadModel(file, { backend: 'ts' });
    const f16 = await loadModel(file, { backend: 'ts', dtype: 'f16' });
    const w = f16.weights.layers[0].wq;
    assert.equal(w.dtype, 'f16');
    assert.ok(w.data instanceof Uint16Array && w.data.length === w.rows * w.cols);
    assert.equal(f16.fingerprint, f32.fingerprint);
    const a = f32.forward(ids);
    assert.deepEqual(f16.forward(ids), a);
    const nat = await loadModel(file, { backend: 'native', dtype: 'f16' }).catch(() => null);
    if (nat) {
      const b = nat.forward(ids);
      assert.ok(maxAbsDiff(a, b) <= 1e-5 * Math.max(1, maxAbs(a)), `native f16 logits differ by ${maxAbsDiff(a, b)}`);
    }
  });

  test('quantized GGUF: weights stay as blocks in memory, within quantization error of F32', async () => {
    const hf = await loadModel(tinystories656k, { backend: 'ts' });
    for (const [type, tol] of [
      ['q8_0', 0.05],
      ['q4_k', 0.25],
      ['q6_k', 0.05],
    ] as const) {
      const file = path.join(tmp, `ts-${type}.gguf`);
      writeGgufModel(file, hf.config, hf.weights, hf.tokenizer, type);
      const g = await loadModel(file, { backend: 'ts' });
      assert.ok(g.weights.layers[0].wq.data instanceof Uint8Array, type);
      const ids = [[1, ...hf.tokenizer.encode('Once upon a time')]];
      const a = hf.forward(ids);
      const b = g.forward(ids);
      assert.ok(maxAbsDiff(a, b) <= tol * maxAbs(a), `${type}: ${maxAbsDiff(a, b)}`);
      assert.ok(maxAbsDiff(a, b) > 0, `${type}: quantization changes the logits`);
    }
  });
});

describe('node-llama-cpp loads our GGUF files and decodes as we do', () => {
  const prompts = ['Once upon a time', 'The little dog', 'Lily and Tom went to the park. They', 'One day, a girl named Sue'];
  test('F32: identical greedy tokens; Q8_0 and Q4_K: identical until a near-tie (top-2 gap < 0.1)', { timeout: 120_000 }, async () => {
    const { getLlama, LlamaLogLevel } = await import('node-llama-cpp');
    const llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error });
    const hf = await loadModel(tinystories656k, { backend: 'ts' });
    for (const type of ['f32', 'q8_0', 'q4_k'] as const) {
      const file = path.join(tmp, `nlc-${type}.gguf`);
      writeGgufModel(file, hf.config, hf.weights, hf.tokenizer, type);
      const ours = await loadModel(file);
      const model = await llama.loadModel({ modelPath: file });
      const ctx = await model.createContext({ contextSize: 256, threads: 2 });
      let agreed = 0;
      for (const p of prompts) {
        const ids = ours.tokenizer.encode(p);
        assert.deepEqual(Array.from(model.tokenize(p, false)), ids, `${type}: tokenization of ${p}`);
        const seq = ctx.getSequence();
        const theirs: number[] = [];
        for await (const t of seq.evaluate([ours.tokenizer.bosId, ...ids] as never[], { temperature: 0 })) {
          theirs.push(t as unknown as number);
          if (theirs.length >= 24) break;
        }
        seq.dispose();
        const toks = [ours.tokenizer.bosId, ...ids];
        const V = ours.config.vocabSize;
        for (let i = 0; i < theirs.length; i++) {
          const row = ours.forward([toks]).subarray((toks.length - 1) * V);
          let best = 0;
          for (let v = 1; v < V; v++) if (row[v] > row[best]) best = v;
          if (best !== theirs[i]) {
            assert.notEqual(type, 'f32', `F32: token ${i} of "${p}": ours ${best}, llama.cpp ${theirs[i]}`);
            const gap = row[best] - row[theirs[i]];
            assert.ok(gap < 0.1, `${type}: "${p}" diverges at token ${i} with a logit gap of ${gap} (not a near-tie)`);
            break;
          }
          agreed++;
          toks.push(best);
        }
      }
      if (type === 'f32') assert.equal(agreed, prompts.length * 24);
      else assert.ok(agreed >= prompts.length * 5, `${type}: only ${agreed} tokens agreed`);
      await ctx.dispose();
      await model.dispose();
    }
  });
});

describe('GGUF bad input', () => {
  const good = path.join(tmp, 'bad-base.gguf');
  const tensors = [{ name: 'a', dims: [32, 2], type: 8, data: new Uint8Array(68) }];
  writeGguf(good, [['general.architecture', { type: GgufType.STRING, value: 'llama' }]], tensors);
  const bytes = fs.readFileSync(good);
  const mutate = (name: string, f: (b: Buffer) => Buffer): string => {
    const p = path.join(tmp, name);
    fs.writeFileSync(p, f(Buffer.from(bytes)));
    return p;
  };
  const expect = (p: string, re: RegExp): void => {
    assert.throws(
      () => readGguf(p),
      (e: unknown) => e instanceof LlamaAdapterError && e.message.includes(p) && re.test(e.message),
    );
  };
  test('wrong magic, big-endian, unknown version', () => {
    expect(
      mutate('magic.gguf', (b) => (b.write('GGUX', 0), b)),
      /magic/,
    );
    expect(
      mutate('be.gguf', (b) => (b.writeUInt32LE(0x03000000, 4), b)),
      /big-endian/,
    );
    expect(
      mutate('v9.gguf', (b) => (b.writeUInt32LE(9, 4), b)),
      /version 9/,
    );
  });
  test('truncated files and tensor data past the end', () => {
    expect(
      mutate('trunc-head.gguf', (b) => b.subarray(0, 30)),
      /truncated|file ends/,
    );
    expect(
      mutate('trunc-data.gguf', (b) => b.subarray(0, b.length - 40)),
      /past the end/,
    );
  });
  test('huge metadata and tensor counts, huge array counts, absurd dims, unknown types', () => {
    expect(
      mutate('kv.gguf', (b) => (b.writeBigUInt64LE(1n << 40n, 16), b)),
      /metadata_kv_count/,
    );
    expect(
      mutate('tc.gguf', (b) => (b.writeBigUInt64LE(1n << 33n, 8), b)),
      /tensor_count/,
    );
    // a tensor info: name (8 + 1), n_dims, dims, type, offset: find the dims by the name "a"
    const at = bytes.lastIndexOf(Buffer.from([1, 0, 0, 0, 0, 0, 0, 0, 0x61]));
    expect(
      mutate('dims.gguf', (b) => (b.writeBigUInt64LE(1n << 50n, at + 13), b)),
      /out of range|more values|past the end/,
    );
    expect(
      mutate('ndims.gguf', (b) => (b.writeUInt32LE(9, at + 9), b)),
      /dimensions/,
    );
    expect(
      mutate('type.gguf', (b) => (b.writeUInt32LE(99, at + 29), b)),
      /unknown ggml type 99/,
    );
    expect(
      mutate('off.gguf', (b) => (b.writeBigUInt64LE(1024n, at + 33), b)),
      /past the end/,
    );
    const arr = path.join(tmp, 'arr.gguf');
    writeGguf(arr, [['x', { type: GgufType.ARRAY, elementType: GgufType.UINT32, value: [1, 2] }]], []);
    const ab = fs.readFileSync(arr);
    ab.writeBigUInt64LE(1n << 45n, 41); // magic, version, counts, key "x", value type, element type: then the count
    fs.writeFileSync(arr, ab);
    expect(arr, /elements, more than/);
  });
  test('a supported container with an unsupported tensor type is refused naming the type', () => {
    const hf = readModelFile(tinystories656k);
    const file = path.join(tmp, 'q2k.gguf');
    writeGgufModel(file, hf.config, hf.weights, tokCache as never, 'f32');
    const b = fs.readFileSync(file);
    const f = readGguf(file);
    const t = f.tensors.find((x) => x.name === 'blk.0.attn_q.weight');
    assert.ok(t);
    // rewrite its type field (after name, n_dims, 2 dims) to Q2_K with a compatible size is not possible; make it I8 (1 byte/value)
    const nameAt = b.indexOf(Buffer.from('blk.0.attn_q.weight'));
    b.writeUInt32LE(24, nameAt + 'blk.0.attn_q.weight'.length + 4 + 16);
    fs.writeFileSync(file, b);
    assert.throws(() => readModelFile(file), /type I8, which is not supported \(supported: F32, F16, BF16, Q8_0/);
  });
  test('rows of a quantized matrix are whole blocks', () => {
    assert.equal(quantRowBytes('q4_k', 512), 288);
    assert.equal(quantRowBytes('q8_0', 64), 68);
  });
});
