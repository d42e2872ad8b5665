// Regression tests for the examples of issue 18 (hardening every file read): each corrupt input
// the issue found is refused at once with an error naming the file and the field; training
// resume, overwrite, metrics and Ctrl-C behave as documented.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { LlamaAdapterError } from '../src/core/errors.js';
import { readModelFile } from '../src/formats/registry.js';
import { createAdapter } from '../src/methods/v1/adapter.js';
import { saveAdapter } from '../src/methods/v1/file.js';
import { loadAdapter } from '../src/methods/v1/interop/registry.js';
import { loadModel } from '../src/model/load.js';
import type { LlamaModel } from '../src/model/model.js';
import { loadTokenizer } from '../src/tokenizer/load.js';
import { finetune } from '../src/train/finetune.js';
import { assets, repoRoot, stories260K, stories260Kq80, tinystories656k } from './helpers.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'llama-adapter-hardening-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
const alpaca = path.join(assets, 'data/instruct/litgpt_fixtures/alpaca.json');
const bin = path.join(repoRoot, 'bin/llama-adapter.js');

/** A LlamaAdapterError matching `re`, thrown within `ms`. */
async function refusedFast(fn: () => unknown, re: RegExp, ms = 2000): Promise<void> {
  const t0 = Date.now();
  await assert.rejects(
    async () => fn(),
    (e: unknown) => {
      assert.ok(e instanceof LlamaAdapterError, `not a LlamaAdapterError: ${String(e)}`);
      assert.match(e.message, re);
      return true;
    },
  );
  assert.ok(Date.now() - t0 < ms, `took ${Date.now() - t0} ms`);
}

/** A copy of the adapter file `src` with its __metadata__ edited by `edit`. */
function editMetadata(src: string, dst: string, edit: (m: Record<string, string>) => void): void {
  const b = fs.readFileSync(src);
  const n = Number(b.readBigUInt64LE(0));
  const h = JSON.parse(b.subarray(8, 8 + n).toString('utf8')) as { __metadata__: Record<string, string> };
  edit(h.__metadata__);
  const hb = Buffer.from(JSON.stringify(h));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(hb.length));
  fs.writeFileSync(dst, Buffer.concat([len, hb, b.subarray(8 + n)]));
}

describe('corrupt files from the issue are refused at once, naming file and field', () => {
  let model: LlamaModel;
  let adapterFile: string;
  before(async () => {
    model = await loadModel(stories260K, { backend: 'ts' });
    adapterFile = path.join(tmp, 'a.safetensors');
    saveAdapter(createAdapter(model, { promptLength: 3, adapterLayers: 2 }), adapterFile);
  });

  it('tokenizer.json with a vocab or added-token id of 1,000,000,000', async () => {
    const j = JSON.parse(fs.readFileSync(path.join(tinystories656k, 'tokenizer.json'), 'utf8')) as {
      model: { vocab: Record<string, number> };
      added_tokens: { id: number }[];
    };
    const f = path.join(tmp, 'big-id.json');
    const first = Object.keys(j.model.vocab)[5];
    fs.writeFileSync(f, JSON.stringify({ ...j, model: { ...j.model, vocab: { ...j.model.vocab, [first]: 1e9 } } }));
    await refusedFast(() => loadTokenizer(f), /big-id\.json: vocab entry .* has bad id 1000000000/);
    j.added_tokens[0].id = 1e9;
    fs.writeFileSync(f, JSON.stringify(j));
    await refusedFast(() => loadTokenizer(f), /big-id\.json: added_tokens\[0\] .* has bad id 1000000000/);
  });

  it('llama2.c header with seq_len 657,929,687', async () => {
    const b = fs.readFileSync(stories260Kq80);
    b.writeInt32LE(657929687, 8 + 6 * 4); // version-2 header: magic, version, then dim .. seq_len
    const f = path.join(tmp, 'seq.bin');
    fs.writeFileSync(f, b);
    await refusedFast(() => readModelFile(f), /seq\.bin: .*seq_len is 657929687, above the supported maximum/);
  });

  it('safetensors with an inserted byte or trailing bytes', async () => {
    const b = fs.readFileSync(adapterFile);
    const f = path.join(tmp, 'trail.safetensors');
    fs.writeFileSync(f, Buffer.concat([b, Buffer.of(0)]));
    await refusedFast(() => loadAdapter(f, model), /trail\.safetensors: the tensors cover \d+ bytes of the \d+-byte data section/);
  });

  it('adapter prompt_length "1e9", adapter_layers deleted, corrupt training_args, NaN values', async () => {
    const f = path.join(tmp, 'meta.safetensors');
    editMetadata(adapterFile, f, (m) => {
      m.prompt_length = '1e9';
    });
    await refusedFast(() => loadAdapter(f, model), /meta\.safetensors: __metadata__ "prompt_length" is "1e9", expected an integer from 1 to 512/);
    editMetadata(adapterFile, f, (m) => {
      delete m.adapter_layers;
    });
    await refusedFast(() => loadAdapter(f, model), /meta\.safetensors: __metadata__ has no "adapter_layers"/);
    editMetadata(adapterFile, f, (m) => {
      m.training_args = '{"prompt_style": "alpaca",';
    });
    await refusedFast(() => loadAdapter(f, model), /meta\.safetensors: __metadata__ "training_args" is not valid JSON/);
    const b = fs.readFileSync(adapterFile);
    b.writeFloatLE(Number.NaN, b.length - 4);
    fs.writeFileSync(f, b);
    await refusedFast(() => loadAdapter(f, model), /meta\.safetensors: tensor "layers\.\d+\.adaption_\w+" holds a non-finite value \(NaN/);
  });

  it('training checkpoint with "micro" renamed; a fresh run over an existing checkpoint', async () => {
    const out = path.join(tmp, 'ck.safetensors');
    const common = { model, data: alpaca, out, promptLength: 2, adapterLayers: 1, valSize: 3, maxSeqLen: 160, batchSize: 4, metrics: null, plot: null };
    const r = await finetune({ ...common, maxSteps: 2 });
    const f = path.join(tmp, 'bad.ckpt.safetensors');
    editMetadata(r.checkpoint, f, (m) => {
      m.checkpoint = m.checkpoint.replace('"micro"', '"mycro"');
    });
    await refusedFast(() => finetune({ ...common, maxSteps: 2, resume: f }), /bad\.ckpt\.safetensors: checkpoint position "micro" is null/);
    // the run wrote a checkpoint: a fresh run into the same --out is refused
    await refusedFast(() => finetune({ ...common, maxSteps: 2 }), /ck\.ckpt\.safetensors: a training checkpoint is already there; .*--resume/);
  });
});

describe('resume keeps the metrics file free of duplicated steps', () => {
  it('lines written after the checkpoint are dropped on resume', async () => {
    const model = await loadModel(stories260K, { backend: 'ts' });
    const out = path.join(tmp, 'm.safetensors');
    const metrics = path.join(tmp, 'm.metrics.jsonl');
    const common = { model, data: alpaca, out, promptLength: 2, adapterLayers: 1, valSize: 3, maxSeqLen: 160, batchSize: 4, epochs: 2, plot: null };
    const ac = new AbortController();
    const half = await finetune({ ...common, checkpointEvery: 2, metrics, overwrite: true, signal: ac.signal, onProgress: (p) => p.step === 2 && ac.abort() });
    assert.equal(half.steps, 2);
    fs.appendFileSync(metrics, '{"step":3,"loss":9}\n{"step":4,"lo'); // as a kill would leave it
    await finetune({ ...common, checkpointEvery: 2, metrics, resume: half.checkpoint });
    const steps = fs
      .readFileSync(metrics, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { step: number; loss?: number })
      .filter((l) => l.loss !== undefined)
      .map((l) => l.step);
    assert.deepEqual(
      steps,
      Array.from({ length: steps.length }, (_, i) => i + 1),
    );
  });
});

describe('training stops cleanly', () => {
  const common = (model: LlamaModel, out: string) => ({
    model,
    data: alpaca,
    out,
    valSize: 3,
    maxSeqLen: 160,
    batchSize: 2,
    metrics: null,
    plot: null,
    overwrite: true,
  });

  it('on a non-finite loss or gradient, naming the step, before applying it', async () => {
    const model = await loadModel(stories260K, { backend: 'ts' });
    const a = createAdapter(model, { promptLength: 2, adapterLayers: 1 });
    for (const p of a.parameters().values()) p[0] = Number.NaN;
    a.invalidate();
    await refusedFast(() => finetune({ ...common(model, path.join(tmp, 'nan.safetensors')), adapter: a, maxSteps: 3 }), /training diverged at step 1 \(loss /);
  });

  it('an AbortSignal fired from a timer reaches the loop (it yields between steps)', async () => {
    const model = await loadModel(stories260K, { backend: 'ts' });
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 100);
    const r = await finetune({ ...common(model, path.join(tmp, 'timer.safetensors')), promptLength: 2, adapterLayers: 1, epochs: 500, signal: ac.signal });
    assert.equal(r.aborted, true);
    assert.ok(r.steps >= 1 && r.steps < 5000, String(r.steps));
    assert.ok(fs.existsSync(r.checkpoint) && fs.existsSync(path.join(tmp, 'timer.safetensors')));
  });
});

describe('the CLI refuses out-of-range flags', () => {
  const cli = (...a: string[]): { status: number | null; stderr: string } => spawnSync(process.execPath, [bin, ...a], { encoding: 'utf8' });
  it('--top-p 2, --repetition-penalty 0, --lr 1e10', () => {
    for (const [flag, v] of [
      ['--top-p', '2'],
      ['--repetition-penalty', '0'],
    ]) {
      const r = cli('generate', '-m', stories260K, flag, v);
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, new RegExp(`${flag} must be a number in \\(0, `));
    }
    const r = cli('finetune', '-m', stories260K, '-d', alpaca, '-o', path.join(tmp, 'lr.safetensors'), '--lr', '1e10');
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /--lr must be a number in \(0, 1\]/);
  });
});

describe('Ctrl-C during a real finetune', () => {
  const data = alpaca;
  const flags = (out: string): string[] =>
    ['finetune', '-m', stories260K, '-d', data, '-o', out, '--val-size', '3', '--no-progress', '--prompt-length', '2', '--adapter-layers', '2'].concat([
      '--batch-size',
      '2',
      '--epochs',
      '50',
      '--max-steps',
      '40',
      '--max-seq-len',
      '160',
      '--lr',
      '0.01',
    ]);
  const env = { ...process.env, LLAMA_ADAPTER_BACKEND: 'ts' };
  /** Run finetune into `out`, send `times` SIGINTs (20 ms apart) once it logs step `step`; its exit code and stderr. */
  const interrupt = (out: string, step: number, times: number): Promise<{ code: number | null; signal: NodeJS.Signals | null; err: string }> =>
    new Promise((resolve) => {
      const child = spawn(process.execPath, [bin, ...flags(out)], { env });
      let err = '';
      let sent = false;
      child.stderr.on('data', (d: Buffer) => {
        err += d.toString();
        if (!sent && err.includes(`step ${step}/`)) {
          sent = true;
          for (let i = 0; i < times; i++) setTimeout(() => child.kill('SIGINT'), 20 * i);
        }
      });
      child.on('exit', (code, signal) => resolve({ code, signal, err }));
    });

  it('finishes the step, writes adapter + checkpoint, exits 130 with a resume hint; resuming gives the same adapter bytes', async () => {
    const full = path.join(tmp, 'sig-full.safetensors');
    const rf = spawnSync(process.execPath, [bin, ...flags(full)], { encoding: 'utf8', env });
    assert.equal(rf.status, 0, rf.stderr);

    const out = path.join(tmp, 'sig.safetensors');
    const { code, err } = await interrupt(out, 10, 1);
    assert.equal(code, 130, err);
    assert.match(err, /interrupted: finishing this step/);
    assert.match(err, /--resume .*sig\.ckpt\.safetensors/);
    assert.ok(fs.existsSync(out));
    const rr = spawnSync(process.execPath, [bin, ...flags(out), '--resume', out.replace('.safetensors', '.ckpt.safetensors')], { encoding: 'utf8', env });
    assert.equal(rr.status, 0, rr.stderr);
    assert.deepEqual(fs.readFileSync(out), fs.readFileSync(full));
  });

  it('a second Ctrl-C exits at once, leaving a checkpoint that resumes', async () => {
    const out = path.join(tmp, 'sig2.safetensors');
    const t0 = Date.now();
    const { code, signal, err } = await interrupt(out, 20, 2);
    // the second SIGINT kills the process (default action) unless the step had already finished
    assert.ok(code === 130 || signal === 'SIGINT', `exit ${code} ${signal}\n${err}`);
    assert.ok(Date.now() - t0 < 20_000);
    const ckpt = out.replace('.safetensors', '.ckpt.safetensors');
    assert.ok(fs.existsSync(ckpt), 'the epoch checkpoint of step 10 (or the one of the interrupted step) is there');
    const rr = spawnSync(process.execPath, [bin, ...flags(out), '--resume', ckpt], { encoding: 'utf8', env });
    assert.equal(rr.status, 0, rr.stderr);
  });
});
