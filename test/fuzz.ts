// Mutation fuzzer over every file format the library reads (issue 18). Each format starts from a
// real file (an asset, or one the library writes), makes seeded mutants (bit flips, byte
// overwrites, truncation, inserted bytes, int32 header fields, JSON header edits) and loads each
// through the public API. Every outcome must be a LlamaAdapterError naming the file, or a load
// (identical to the original, or changed but valid: safetensors has no checksum) with finite
// values. Used by test/fuzz.test.ts (small, in process) and test/fuzz-main.ts (`npm run fuzz`).
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LlamaAdapterError } from '../src/core/errors.js';
import { firstNonFinite } from '../src/core/finite.js';
import { matrixToF32 } from '../src/core/quant.js';
import type { Matrix } from '../src/core/weights.js';
import { Rng } from '../src/core/rng.js';
import { writeGgufModel } from '../src/formats/gguf.js';
import { readModelFile } from '../src/formats/registry.js';
import { createAdapter } from '../src/methods/v1/adapter.js';
import { saveAdapter } from '../src/methods/v1/file.js';
import { loadAdapter, writeAdapterAs } from '../src/methods/v1/interop/registry.js';
import { fromAdapter } from '../src/methods/v1/interop/tensors.js';
import { writeTorchFile } from '../src/core/pth.js';
import { loadModel } from '../src/model/load.js';
import { trainableTensors } from '../src/model/method.js';
import type { LlamaModel } from '../src/model/model.js';
import { loadTokenizer } from '../src/tokenizer/load.js';
import { readTrainingCheckpoint, writeTrainingCheckpoint, type RunShape } from '../src/train/checkpoint.js';
import { AdamW } from '../src/train/optimizer.js';
import { assets, stories260K, stories260Kq80, tinystories656k, tok512 } from './helpers.js';

export const FORMATS = [
  'hf-safetensors',
  'hf-config',
  'llama2c-fp32',
  'llama2c-q80',
  'tokenizer-json',
  'tokenizer-model',
  'tokenizer-bin',
  'adapter',
  'checkpoint',
  'official-pth',
  'litgpt-pth',
  'peft',
  'gguf',
] as const;
export type FuzzFormat = (typeof FORMATS)[number];

export type Outcome = 'clean-error' | 'unnamed-error' | 'raw-error' | 'loaded-identical' | 'loaded-changed' | 'non-finite' | 'hang';
export const OUTCOMES: readonly Outcome[] = ['clean-error', 'hang', 'raw-error', 'unnamed-error', 'loaded-changed', 'loaded-identical', 'non-finite'];

/** What loading one file gave: a digest of everything loaded, and whether any value is NaN/Inf. */
interface Loaded {
  digest: string;
  nonFinite: boolean;
}

/** One format under test: the file to mutate (inside `dir` for the HF format), how to load it. */
interface Target {
  file: string; // the file the mutants replace
  named: string; // what every error must name
  original: Uint8Array;
  load(): Promise<Loaded>;
  json: 'safetensors' | 'whole' | null; // where a JSON edit applies
}

function digestOf(arrays: Iterable<ArrayLike<number> & { buffer: ArrayBufferLike; byteOffset: number; byteLength: number }>, extra = ''): Loaded {
  const h = createHash('sha256');
  let nonFinite = false;
  for (const a of arrays) {
    h.update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
    if (a instanceof Float32Array && firstNonFinite(a) >= 0) nonFinite = true;
  }
  h.update(extra);
  return { digest: h.digest('hex'), nonFinite };
}

function modelArrays(w: ReturnType<typeof readModelFile>['weights']): Float32Array[] {
  const out: Float32Array[] = [];
  const add = (m: Matrix | Float32Array): void => {
    if (m instanceof Float32Array) out.push(m);
    else if (m.dtype === 'f32') out.push(m.data);
    else if (m.dtype !== 'bf16') out.push(matrixToF32(m)); // quantized: NaN/Inf block scales show here
  };
  add(w.tokEmbd);
  for (const l of w.layers) for (const t of Object.values(l)) add(t as Float32Array);
  add(w.outputNorm);
  add(w.output);
  return out;
}

const SAMPLE_TEXT = 'Once upon a time, a little girl named Lily saw a big dog. 123 ünïcødé!';

/** Run arguments the fuzzed training checkpoint was written with. */
const CKPT_ARGS = { data: 'fuzz', batch_size: 2 };
const CKPT_RUN: RunShape = { microPerEpoch: 4, accum: 1, epochs: 2, totalSteps: 8 };

let baseModel: Promise<LlamaModel> | null = null;
function stories(): Promise<LlamaModel> {
  baseModel ??= loadModel(stories260K, { backend: 'ts' });
  return baseModel;
}

/** Make the format's original file in `dir` and say how to load it. */
export async function setupTarget(format: FuzzFormat, dir: string): Promise<Target> {
  fs.mkdirSync(dir, { recursive: true });
  const copy = (from: string, name: string): string => {
    const to = path.join(dir, name);
    fs.copyFileSync(from, to);
    fs.chmodSync(to, 0o644);
    return to;
  };
  const model = (file: string, named = file): Target => ({
    file,
    named,
    original: new Uint8Array(fs.readFileSync(file)), // a copy, never a Buffer (Buffer#slice aliases)
    load: async () => {
      const mf = readModelFile(named, { checkTensors: true });
      return digestOf(modelArrays(mf.weights), JSON.stringify(mf.config));
    },
    json: format === 'hf-safetensors' ? 'safetensors' : format === 'hf-config' ? 'whole' : null,
  });
  switch (format) {
    case 'hf-safetensors':
    case 'hf-config': {
      const d = path.join(dir, 'hf');
      fs.mkdirSync(d, { recursive: true });
      for (const n of fs.readdirSync(tinystories656k)) if (n.endsWith('.json') || n.endsWith('.safetensors')) copy(path.join(tinystories656k, n), `hf/${n}`);
      return model(path.join(d, format === 'hf-config' ? 'config.json' : 'model.safetensors'), d);
    }
    case 'llama2c-fp32':
      return model(copy(stories260K, 'model.bin'));
    case 'llama2c-q80':
      return model(copy(stories260Kq80, 'model_q80.bin'));
    case 'gguf': {
      // stories260K as Q8_0 GGUF (its 172-wide down projection falls back to F16) with its tokenizer
      const file = path.join(dir, 'model.gguf');
      const mf = readModelFile(stories260K);
      writeGgufModel(file, mf.config, mf.weights, await loadTokenizer(tok512), 'q8_0');
      const t = model(file);
      return {
        ...t,
        load: async () => {
          const mf = readModelFile(file, { checkTensors: true });
          const tok = await loadTokenizer(file);
          return digestOf(modelArrays(mf.weights), JSON.stringify([mf.config, tok.encode(SAMPLE_TEXT)]));
        },
      };
    }
    case 'tokenizer-json':
    case 'tokenizer-model':
    case 'tokenizer-bin': {
      const file =
        format === 'tokenizer-json'
          ? copy(path.join(tinystories656k, 'tokenizer.json'), 'tokenizer.json')
          : format === 'tokenizer-model'
            ? copy(path.join(assets, 'tokenizers/llama2/tokenizer.model'), 'tokenizer.model')
            : copy(tok512, 'tok512.bin');
      return {
        file,
        named: file,
        original: new Uint8Array(fs.readFileSync(file)), // a copy, never a Buffer (Buffer#slice aliases)
        json: format === 'tokenizer-json' ? 'whole' : null,
        load: async () => {
          const t = await loadTokenizer(file);
          const ids = t.encode(SAMPLE_TEXT, { bos: true });
          const text = t.decode(Array.from({ length: Math.min(t.vocabSize, 600) }, (_, i) => i).filter((i) => i !== t.bosId && i !== t.eosId));
          return digestOf([], JSON.stringify([t.vocabSize, t.bosId, t.eosId, ids, text]));
        },
      };
    }
    case 'adapter':
    case 'checkpoint': {
      const m = await stories();
      const a = createAdapter(m, { promptLength: 4, adapterLayers: 2, seed: 3 });
      for (const [k, p] of a.parameters()) if (k.endsWith('gate')) p.fill(0.25);
      const file = path.join(dir, format === 'adapter' ? 'adapter.safetensors' : 'run.ckpt.safetensors');
      if (format === 'adapter') saveAdapter(a, file);
      else {
        const opt = new AdamW(trainableTensors(a), new Map([...a.parameters().keys()].map((k) => [k, a.shapeOf(k)])), {
          beta1: 0.9,
          beta2: 0.95,
          eps: 1e-8,
          weightDecay: 0,
        });
        for (const [k, v] of opt.v) {
          v.fill(1e-4);
          (opt.m.get(k) as Float32Array).fill(-1e-3);
        }
        writeTrainingCheckpoint(
          file,
          a,
          opt,
          { step: 5, epoch: 1, micro: 1 },
          CKPT_ARGS,
          [1, 2, 3, 4, 5].map((step) => ({ step, loss: 3 - step / 10 })),
        );
      }
      return {
        file,
        named: file,
        original: new Uint8Array(fs.readFileSync(file)), // a copy, never a Buffer (Buffer#slice aliases)
        json: 'safetensors',
        load: async () => {
          if (format === 'adapter') return digestOf(loadAdapter(file, m).parameters().values());
          const r = readTrainingCheckpoint(file, m, CKPT_ARGS, CKPT_RUN);
          return digestOf([...r.adapter.parameters().values(), ...r.m.values(), ...r.v.values()], JSON.stringify([r.pos, r.history]));
        },
      };
    }
    case 'official-pth':
    case 'litgpt-pth':
    case 'peft': {
      // third-party adapter files as our writers make them (official, PEFT) or litgpt's keys in a flat state dict
      const m = await stories();
      const a = createAdapter(m, { promptLength: 10, adapterLayers: 2, gate: format === 'peft' ? 'raw-per-layer' : 'tanh-per-head', seed: 5 });
      for (const [k, p] of a.parameters()) if (k.endsWith('gate')) p.fill(0.25);
      let file: string;
      let named: string;
      if (format === 'peft') {
        named = path.join(dir, 'peft');
        writeAdapterAs(fromAdapter(a, 'fuzz'), 'peft', named);
        file = path.join(named, 'adapter_model.safetensors');
      } else if (format === 'official-pth') {
        file = named = path.join(dir, 'official.pth');
        writeAdapterAs(fromAdapter(a, 'fuzz'), 'official', file);
      } else {
        file = named = path.join(dir, 'lit_model.pth.adapter');
        const H = m.config.nHeads;
        writeTorchFile(
          file,
          [...a.parameters()].map(([k, p]) => {
            const l = /\d+/.exec(k)![0];
            return k.endsWith('gate')
              ? { name: `transformer.h.${l}.attn.gating_factor`, dtype: 'F32' as const, shape: [1, 1, H, 1], data: p }
              : { name: `transformer.h.${l}.attn.adapter_wte.weight`, dtype: 'F32' as const, shape: [10, m.config.dim], data: p };
          }),
        );
      }
      return {
        file,
        named,
        original: new Uint8Array(fs.readFileSync(file)),
        json: format === 'peft' ? 'safetensors' : null,
        load: async () =>
          digestOf(
            loadAdapter(named, m, { onWarning: () => {} })
              .parameters()
              .values(),
          ),
      };
    }
  }
}

// ---------------------------------------------------------------- mutators

const INTS = [0, 1, -1, 2, 3, 7, 255, 256, 65535, 65536, 1e6, 1e9, 657929687, 2 ** 31 - 1, -(2 ** 31)];
const JSON_VALUES: unknown[] = [null, 0, -1, 1.5, 1e9, 1e308, '', '1e9', '-1', 'NaN', 'x', [], {}, [0, 1e9], true];

/** A JSON value somewhere in `root` changed, deleted or replaced (strings in __metadata__ stay strings half the time). */
function editJson(root: unknown, rng: Rng): void {
  let node = root;
  for (let depth = 0; depth < 6; depth++) {
    if (node === null || typeof node !== 'object') return;
    const keys = Array.isArray(node) ? node.map((_, i) => String(i)) : Object.keys(node);
    if (keys.length === 0) return;
    const k = keys[rng.int(keys.length)];
    const o = node as Record<string, unknown>;
    const child = o[k];
    if (child !== null && typeof child === 'object' && rng.uniform() < 0.6) {
      node = child;
      continue;
    }
    const r = rng.uniform();
    if (r < 0.2 && !Array.isArray(node)) delete o[k];
    else if (r < 0.5 && typeof child === 'string') o[k] = String(JSON_VALUES[rng.int(JSON_VALUES.length)]);
    else if (r < 0.6 && typeof child === 'string') o[k] = child.replace(/.$/, String.fromCharCode(33 + rng.int(90)));
    else o[k] = JSON_VALUES[rng.int(JSON_VALUES.length)];
    return;
  }
}

/** Mutant number `i` of `t` (seeded: the same seed and i give the same bytes). */
export function mutate(t: Pick<Target, 'original' | 'json'>, seed: number, i: number): Uint8Array {
  const rng = new Rng((seed * 7919 + i * 104729 + 17) >>> 0);
  const src = t.original;
  const n = src.length;
  // most fields live in the first bytes: aim half the point mutations there
  const pos = (): number => (rng.uniform() < 0.5 ? rng.int(Math.min(n, 1024)) : rng.int(n));
  const kind = rng.int(t.json ? 7 : 6);
  const out = new Uint8Array(src);
  switch (kind) {
    case 0: {
      const p = pos();
      out[p] ^= 1 << rng.int(8);
      return out;
    }
    case 1: {
      const p = pos();
      out[p] = [0, 0xff, 0x7f, 0x80, rng.int(256)][rng.int(5)];
      return out;
    }
    case 2:
      return src.slice(0, rng.int(n));
    case 3: {
      const p = pos();
      const ins = new Uint8Array(n + 1);
      ins.set(src.subarray(0, p));
      ins[p] = rng.int(256);
      ins.set(src.subarray(p), p + 1);
      return ins;
    }
    case 4: {
      const p = 4 * rng.int(Math.min(64, n >> 2));
      new DataView(out.buffer).setInt32(p, INTS[rng.int(INTS.length)], true);
      return out;
    }
    case 5: {
      // several flips at once
      for (let k = 0; k < 8; k++) out[pos()] ^= 1 << rng.int(8);
      return out;
    }
    default:
      return editJsonOf(t, rng);
  }
}

function editJsonOf(t: Pick<Target, 'original' | 'json'>, rng: Rng): Uint8Array {
  const src = t.original;
  if (t.json === 'whole') {
    const j = JSON.parse(Buffer.from(src).toString('utf8')) as unknown;
    editJson(j, rng);
    return Buffer.from(JSON.stringify(j), 'utf8');
  }
  const dv = new DataView(src.buffer, src.byteOffset, src.byteLength);
  const hl = Number(dv.getBigUint64(0, true));
  const header = JSON.parse(Buffer.from(src.subarray(8, 8 + hl)).toString('utf8')) as Record<string, unknown>;
  const meta = header.__metadata__ as Record<string, unknown> | undefined;
  // metadata string edits are the interesting ones for adapters and checkpoints
  if (meta && rng.uniform() < 0.5) {
    const keys = Object.keys(meta);
    const k = keys[rng.int(keys.length)];
    const v = String(meta[k]);
    if (k === 'checkpoint' && rng.uniform() < 0.7) {
      const ck = JSON.parse(v) as unknown;
      editJson(ck, rng);
      meta[k] = JSON.stringify(ck);
    } else if (rng.uniform() < 0.3) delete meta[k];
    else meta[k] = String(JSON_VALUES[rng.int(JSON_VALUES.length)]);
  } else editJson(header, rng);
  const hb = Buffer.from(JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(hb.length));
  return Buffer.concat([len, hb, src.subarray(8 + hl)]);
}

// ---------------------------------------------------------------- running

/** Load `bytes` as the target's file and classify what happened. */
export async function runMutant(t: Target, bytes: Uint8Array, originalDigest: string): Promise<{ outcome: Outcome; message: string }> {
  fs.writeFileSync(t.file, bytes);
  try {
    const r = await t.load();
    if (r.nonFinite) return { outcome: 'non-finite', message: '' };
    return { outcome: r.digest === originalDigest ? 'loaded-identical' : 'loaded-changed', message: '' };
  } catch (e) {
    const message = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
    if (!(e instanceof LlamaAdapterError)) return { outcome: 'raw-error', message };
    return { outcome: e.message.includes(t.named) ? 'clean-error' : 'unnamed-error', message };
  }
}

export interface FuzzReport {
  format: FuzzFormat;
  counts: Record<Outcome, number>;
  mutants: number;
  examples: Partial<Record<Outcome, string>>; // first message of each bad outcome
}

export function emptyCounts(): Record<Outcome, number> {
  return Object.fromEntries(OUTCOMES.map((o) => [o, 0])) as Record<Outcome, number>;
}

/**
 * Fuzz one format in this process: mutants `start`..`start+count-1`, stopping early after
 * `budgetMs` (a hang cannot be cut short here: fuzz-main.ts runs this in a worker with a watchdog).
 */
export async function fuzzFormat(
  format: FuzzFormat,
  dir: string,
  o: { seed: number; start?: number; count: number; budgetMs?: number; onResult?: (i: number, outcome: Outcome, message: string) => void },
): Promise<FuzzReport> {
  const t = await setupTarget(format, dir);
  const original = await t.load();
  const counts = emptyCounts();
  const examples: Partial<Record<Outcome, string>> = {};
  const t0 = Date.now();
  let done = 0;
  for (let i = o.start ?? 0; i < (o.start ?? 0) + o.count; i++) {
    if (o.budgetMs !== undefined && Date.now() - t0 > o.budgetMs) break;
    const r = await runMutant(t, mutate(t, o.seed, i), original.digest);
    counts[r.outcome]++;
    done++;
    if (r.message && r.outcome !== 'clean-error') examples[r.outcome] ??= `mutant ${i}: ${r.message}`;
    o.onResult?.(i, r.outcome, r.message);
  }
  fs.writeFileSync(t.file, t.original);
  return { format, counts, mutants: done, examples };
}

/** The table, one row per report. */
export function fuzzTable(reports: readonly FuzzReport[]): string {
  const head = [
    'format',
    'mutants',
    'clean error',
    'hang (> watchdog)',
    'raw error',
    'error not naming the file',
    'loaded although changed',
    'loaded identical',
    'loaded with NaN/Inf',
  ];
  const rows = reports.map((r) => [
    r.format,
    r.mutants,
    r.counts['clean-error'],
    r.counts.hang,
    r.counts['raw-error'],
    r.counts['unnamed-error'],
    r.counts['loaded-changed'],
    r.counts['loaded-identical'],
    r.counts['non-finite'],
  ]);
  return [head, head.map(() => '---'), ...rows].map((r) => `| ${r.join(' | ')} |`).join('\n');
}
