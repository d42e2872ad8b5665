// The ecosystem's adapter files, written by their own tools' layouts in Python (torch.save of the
// official v1 and litgpt state dicts, PEFT's safetensors F32/BF16 and legacy .bin; see
// test/python/interop_fixtures.py), loaded here onto stories260K and tinystories-656k: logits
// within 1e-4 of the PyTorch reference under each format's own gate semantics (and litgpt's
// K/V mis-split when emulated). Then the other way: our converter's PEFT and official files,
// read in Python (torch.load(weights_only=True), PEFT's config and safetensors layout), give the
// same logits there; round trips are bit-exact; mismatched bases and malicious pickles are refused.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { PyDict } from '../src/core/pickle.js';
import { readTorchFile } from '../src/core/pth.js';
import { readSafetensors } from '../src/core/safetensors.js';
import { zipStored } from '../src/core/zip.js';
import {
  createAdapter,
  createServer,
  fromAdapter,
  loadAdapter,
  loadModel,
  readAdapterTensors,
  saveAdapter,
  writeAdapterAs,
  type Adapter,
  type GateMode,
  type LlamaModel,
  type LoadAdapterOptions,
} from '../src/index.js';
import { maxAbsDiff, repoRoot, shared, stories260K, tinystories656k } from './helpers.js';

const PY = '/usr/bin/python3';
const SCRIPT = path.join(repoRoot, 'test/python/interop_fixtures.py');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'llama-adapter-interop-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

function python(...args: string[]): void {
  const r = spawnSync(PY, [SCRIPT, ...args], { encoding: 'utf8' });
  assert.equal(r.status, 0, `python3 ${args[0]} failed (needs Debian's python3-torch and python3-yaml: bash scripts/setup.sh):\n${r.stderr}`);
}

const fx = path.join(tmp, 'fx');
before(() => python('make', fx, path.join(shared, 'reference'), path.join(shared, 'assets')));

const MODELS = [
  { name: 'stories260K', path: stories260K },
  { name: 'tinystories656k', path: tinystories656k },
] as const;

/** file (under fx/<model>/), options, reference tensor. */
const CASES: [string, LoadAdapterOptions, string][] = [
  ['official.pth', {}, 'official_tanh'],
  ['official.pth', { gate: 'raw-per-head' }, 'official_raw'],
  ['official-scalar.pth', { promptLength: 4 }, 'official_scalar'],
  ['litgpt/lit_model.pth.adapter', {}, 'litgpt'],
  ['litgpt/lit_model.pth.adapter', { promptProjection: 'litgpt-split' }, 'litgpt_split'],
  ['peft-f32', {}, 'peft_f32'],
  ['peft-bf16', {}, 'peft_bf16'],
  ['peft-bin', {}, 'peft_bin'],
];

function tokensOf(file: string): number[][] {
  const f = readSafetensors(file);
  const [B, T] = f.info('tokens').shape;
  const d = f.tensorInt32('tokens');
  return Array.from({ length: B }, (_, b) => Array.from(d.subarray(b * T, (b + 1) * T)));
}

function randomize(a: Adapter, seed: number, sameHeads: boolean): void {
  let s = seed;
  const rnd = (): number => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32 - 0.5) * 1.5;
  for (const [k, p] of a.parameters()) {
    if (k.endsWith('gate') && sameHeads) p.fill(rnd());
    else for (let i = 0; i < p.length; i++) p[i] = rnd();
  }
  a.invalidate();
}

function sameBits(a: Adapter, b: Adapter): void {
  const pa = a.parameters();
  const pb = b.parameters();
  assert.deepEqual([...pb.keys()], [...pa.keys()]);
  for (const [k, v] of pa)
    assert.deepEqual(Buffer.from(pb.get(k)!.buffer, pb.get(k)!.byteOffset, pb.get(k)!.byteLength), Buffer.from(v.buffer, v.byteOffset, v.byteLength), k);
}

for (const m of MODELS) {
  describe(`interop ${m.name}`, () => {
    let model: LlamaModel;
    let tokens: number[][];
    let ref: ReturnType<typeof readSafetensors>;
    const dir = (): string => path.join(fx, m.name);
    before(async () => {
      model = await loadModel(m.path);
      ref = readSafetensors(path.join(dir(), 'reference.safetensors'));
      tokens = tokensOf(path.join(dir(), 'reference.safetensors'));
    });

    for (const [file, opts, want] of CASES) {
      it(`${file} ${JSON.stringify(opts)}: logits within 1e-4 of the reference (${want})`, () => {
        const warnings: string[] = [];
        const a = loadAdapter(path.join(dir(), file), model, { ...opts, onWarning: (w) => warnings.push(w) });
        const d = maxAbsDiff(model.forward(tokens, { adapter: a }), ref.tensorF32(want));
        assert.ok(d < 1e-4, `max |diff| ${d}`);
        assert.match(warnings[0], /does not name its base model; only its shape was checked/);
        assert.equal(a.meta.source_file, path.join(dir(), file));
      });
    }

    it('the formats are detected from the files, and defaults are named', () => {
      const t = readAdapterTensors(path.join(dir(), 'official.pth'));
      assert.equal(t.format, 'official');
      assert.equal(t.gate, 'tanh-per-head');
      assert.equal(t.gateChoice, 'default');
      assert.equal(readAdapterTensors(path.join(dir(), 'official-scalar.pth'), { promptLength: 4 }).gate, 'raw-per-layer');
      assert.equal(readAdapterTensors(path.join(dir(), 'peft-bf16')).dtype, 'BF16');
      assert.equal(readAdapterTensors(path.join(dir(), 'peft-f32/adapter_model.safetensors')).format, 'peft');
      assert.equal(readAdapterTensors(path.join(dir(), 'litgpt/lit_model.pth.adapter')).format, 'litgpt');
      // K is not in an official file: a wrong one is refused when it does not divide the rows
      assert.throws(
        () => readAdapterTensors(path.join(dir(), 'official-scalar.pth')),
        /8 rows, not a multiple of the prompt length K=10.*--adapter-prompt-length/,
      );
      // per-head gates as one scalar per layer only where all heads agree
      assert.throws(() => readAdapterTensors(path.join(dir(), 'official.pth'), { gate: 'raw-per-layer' }), /per-head gates that differ/);
      assert.throws(() => loadAdapter(path.join(dir(), 'peft-f32'), model, { gate: 'tanh-per-head' }), /PEFT gates are one raw scalar per layer/);
    });

    it('ours -> PEFT -> ours and ours -> official -> ours are bit-exact; inexact conversions are refused', () => {
      const cases: [GateMode, 'peft' | 'official', boolean][] = [
        ['raw-per-layer', 'peft', false],
        ['tanh-per-head', 'official', false],
        ['raw-per-layer', 'official', false],
        ['raw-per-head', 'official', false],
      ];
      for (const [gate, to, sameHeads] of cases) {
        const a = createAdapter(model, { promptLength: 3, adapterLayers: 2, gate });
        randomize(a, 7, sameHeads);
        const ours = path.join(tmp, `${m.name}-${gate}.safetensors`);
        saveAdapter(a, ours);
        const out = path.join(tmp, `${m.name}-${gate}-${to}${to === 'official' ? '.pth' : ''}`);
        writeAdapterAs(readAdapterTensors(ours), to, out);
        const back = loadAdapter(out, model, { promptLength: 3, gate: to === 'official' ? gate : undefined, onWarning: () => {} });
        assert.equal(back.config.gate, gate);
        sameBits(a, back);
        const again = path.join(tmp, `${m.name}-${gate}-${to}-back.safetensors`);
        writeAdapterAs(readAdapterTensors(out, { promptLength: 3, gate: to === 'official' ? gate : undefined }), 'llama-adapter', again, { host: model });
        sameBits(a, loadAdapter(again, model));
        assert.equal(readSafetensors(again).metadata.source_format, to);
      }
      const t = createAdapter(model, { promptLength: 3, adapterLayers: 2, gate: 'tanh-per-head' });
      randomize(t, 3, false);
      assert.throws(() => writeAdapterAs(fromAdapter(t, 'mem'), 'peft', path.join(tmp, 'x')), /per-head gates that differ.*PEFT has one scalar gate per layer/);
      // tanh gates equal over heads become PEFT's raw scalars: the same effective gates, the same logits
      randomize(t, 5, true);
      const peft = path.join(tmp, `${m.name}-tanh-peft`);
      writeAdapterAs(fromAdapter(t, 'mem'), 'peft', peft);
      const p = loadAdapter(peft, model, { onWarning: () => {} });
      assert.deepEqual(model.forward(tokens, { adapter: p }), model.forward(tokens, { adapter: t }));
    });

    it("litgpt's emulated K/V split survives conversion to our format, and is refused by PEFT and official", () => {
      const a = loadAdapter(path.join(dir(), 'litgpt/lit_model.pth.adapter'), model, { promptProjection: 'litgpt-split', onWarning: () => {} });
      const ours = path.join(tmp, `${m.name}-litgpt-split.safetensors`);
      writeAdapterAs(fromAdapter(a, 'mem'), 'llama-adapter', ours, { host: model });
      assert.equal(readSafetensors(ours).metadata.prompt_projection, 'litgpt-split');
      const d = maxAbsDiff(model.forward(tokens, { adapter: loadAdapter(ours, model) }), ref.tensorF32('litgpt_split'));
      assert.ok(d < 1e-4, `max |diff| ${d}`);
      assert.throws(() => writeAdapterAs(readAdapterTensors(ours), 'peft', path.join(tmp, 'nope')), /litgpt's prompt K\/V split, which PEFT does not do/);
      assert.throws(() => writeAdapterAs(readAdapterTensors(ours), 'official', path.join(tmp, 'nope.pth')), /which the official code does not do/);
    });

    it('training through the emulated litgpt split: gradients match central finite differences', () => {
      const a = loadAdapter(path.join(dir(), 'litgpt/lit_model.pth.adapter'), model, { promptProjection: 'litgpt-split', onWarning: () => {} });
      const targets = tokens.map((r) => r.map((_, t) => (t >= 4 && t + 1 < r.length ? r[t + 1] : -100)));
      const { grads } = model.lossAndGrads(tokens, targets, a);
      const eps = 1e-2;
      for (const [name, p] of a.parameters()) {
        const g = grads.get(name)!;
        let big = 0;
        for (let i = 0; i < g.length; i++) if (Math.abs(g[i]) > Math.abs(g[big])) big = i;
        const old = p[big];
        p[big] = old + eps;
        a.invalidate();
        const up = model.loss(tokens, targets, a).loss;
        p[big] = old - eps;
        a.invalidate();
        const down = model.loss(tokens, targets, a).loss;
        p[big] = old;
        a.invalidate();
        const fd = (up - down) / (2 * eps);
        assert.ok(Math.abs(fd - g[big]) <= 2e-3 + 2e-2 * Math.abs(fd), `${name}[${big}]: analytic ${g[big]} vs finite difference ${fd}`);
      }
    });

    it('a file for another base is refused, naming both shapes', () => {
      const other = m.name === 'stories260K' ? 'tinystories656k' : 'stories260K';
      assert.throws(
        () => loadAdapter(path.join(fx, other, 'official.pth'), model, { onWarning: () => {} }),
        /official adapter for a base with D=\d+, at least \d+ layers, 8 heads, but this model has D=\d+, \d+ layers, 8 heads, 4 kv heads.*another base model/,
      );
      assert.throws(() => loadAdapter(path.join(fx, other, 'peft-f32'), model, { onWarning: () => {} }), /peft adapter for a base with D=.*but this model has/);
    });
  });
}

describe('interop: our files in Python', () => {
  it('converted PEFT and official files load in Python (torch.load weights_only, PEFT layout) and give our logits', async () => {
    const spec: Record<string, unknown>[] = [];
    const ours: { name: string; model: LlamaModel; a: Adapter; tokens: number[][] }[] = [];
    for (const m of MODELS) {
      const model = await loadModel(m.path);
      const tokens = tokensOf(path.join(fx, m.name, 'reference.safetensors'));
      // the official file as read by the official training code (tanh per head)
      const off = loadAdapter(path.join(fx, m.name, 'official.pth'), model, { onWarning: () => {} });
      const offOut = path.join(tmp, `${m.name}-py.pth`);
      writeAdapterAs(fromAdapter(off, 'mem'), 'official', offOut);
      spec.push({ name: `${m.name}_official`, kind: 'official', path: offOut, K: 10, gate: 'tanh', model: m.name, tokens });
      ours.push({ name: `${m.name}_official`, model, a: off, tokens });
      // a trained-in-here adapter (raw-per-layer) as PEFT
      const a = createAdapter(model, { promptLength: 5, adapterLayers: 2, gate: 'raw-per-layer' });
      randomize(a, 11, true);
      const peftOut = path.join(tmp, `${m.name}-py-peft`);
      writeAdapterAs(fromAdapter(a, 'mem'), 'peft', peftOut);
      spec.push({ name: `${m.name}_peft`, kind: 'peft', path: peftOut, model: m.name, tokens });
      ours.push({ name: `${m.name}_peft`, model, a, tokens });
    }
    const specFile = path.join(tmp, 'spec.json');
    fs.writeFileSync(specFile, JSON.stringify(spec));
    const out = path.join(tmp, 'py-logits.safetensors');
    python('check', specFile, path.join(shared, 'reference'), path.join(shared, 'assets'), out);
    const got = readSafetensors(out);
    for (const o of ours) {
      const d = maxAbsDiff(o.model.forward(o.tokens, { adapter: o.a }), got.tensorF32(o.name));
      assert.ok(d < 1e-4, `${o.name}: max |diff| ${d}`);
    }
  });
});

describe('interop: .pth files run no code', () => {
  it('a torch.save of an object with os.system is refused by name, and nothing runs', () => {
    assert.throws(() => readTorchFile(path.join(fx, 'evil.pth')), /refusing to run pickle global posix\.system/);
    assert.throws(() => loadAdapter(path.join(fx, 'evil.pth'), { config: {} } as never), /evil\.pth.*refusing to run pickle global posix\.system/);
    assert.ok(!fs.existsSync(path.join(fx, 'pwned')), 'the pickle ran its command');
  });

  it('a hand-made pickle with a foreign global (GLOBAL and STACK_GLOBAL) is refused naming it', () => {
    const global = Buffer.from('\x80\x02cos\nsystem\nX\x02\x00\x00\x00lsq\x00\x85R.', 'latin1');
    const stackGlobal = Buffer.from('\x80\x04\x8c\x08builtins\x8c\x04eval\x93\x8c\x011\x85R.', 'latin1');
    for (const [pkl, name] of [
      [global, 'os.system'],
      [stackGlobal, 'builtins.eval'],
    ] as const) {
      const file = path.join(tmp, `${name}.pth`);
      fs.writeFileSync(file, zipStored([{ name: 'x/data.pkl', data: pkl }]));
      assert.throws(() => readTorchFile(file), new RegExp(`refusing to run pickle global ${name.replace('.', '\\.')}`));
    }
  });

  it('reads what torch.save wrote: dtypes, shapes, nested {"model": ...}', () => {
    const f = readTorchFile(path.join(fx, 'tinystories656k/litgpt/lit_model.pth.adapter'));
    assert.ok(f.root instanceof PyDict && f.root.map.get('model') instanceof PyDict);
  });
});

describe('interop: command line and server', () => {
  const bin = path.join(repoRoot, 'bin/llama-adapter.js');
  const cli = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', env: { ...process.env, LLAMA_ADAPTER_BACKEND: 'ts' } });

  it('inspect names format, gate convention and its source, K, L, dtype, parameters and base', () => {
    const r = cli('inspect', path.join(fx, 'stories260K/official.pth'), '--adapter-gate', 'raw-per-head', '--json');
    assert.equal(r.status, 0, r.stderr);
    const j = JSON.parse(r.stdout) as Record<string, unknown> & { base: Record<string, unknown> };
    assert.equal(j.format, 'official');
    assert.equal(j.gate, 'raw-per-head');
    assert.match(String(j.gate_choice), /--adapter-gate/);
    assert.equal(j.prompt_length, 10);
    assert.equal(j.adapter_layers, 2);
    assert.equal(j.layers, '3..4');
    assert.equal(j.dtype, 'F32');
    assert.equal(j.parameters, 2 * 10 * 64 + 2 * 8);
    assert.deepEqual([j.base.dim, j.base.layers, j.base.heads], [64, 5, 8]);
    assert.match(String(j.base.fingerprint), /does not name its base model/);
  });

  it('convert official -> llama-adapter with --model records the source; generate reads PEFT directories; an inexact convert is refused', () => {
    const out = path.join(tmp, 'cli-conv.safetensors');
    const r = cli('convert', path.join(fx, 'stories260K/official.pth'), out, '--to', 'llama-adapter', '-m', stories260K);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /warning: .*does not name its base model/);
    const meta = readSafetensors(out).metadata;
    assert.equal(meta.source_format, 'official');
    assert.match(meta.source_gate, /tanh-per-head \(the documented default/);
    const g = cli('generate', '-m', stories260K, '-a', path.join(fx, 'stories260K/peft-bf16'), '-p', 'Once', '-n', '4', '--json', '--temperature', '0');
    assert.equal(g.status, 0, g.stderr);
    const bad = cli('convert', path.join(fx, 'stories260K/official.pth'), path.join(tmp, 'no-peft'), '--to', 'peft');
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /per-head gates that differ .* PEFT has one scalar gate per layer/);
  });

  it('finetune --resume-from-adapter keeps training a PEFT adapter and writes ours with its provenance', () => {
    const out = path.join(tmp, 'resumed.safetensors');
    const data = path.join(shared, 'assets/data/instruct/litgpt_fixtures/alpaca.json');
    const r = cli(
      'finetune',
      '-m',
      stories260K,
      '-d',
      data,
      '-o',
      out,
      '--val-size',
      '3',
      '--no-progress',
      '--max-steps',
      '2',
      '--resume-from-adapter',
      path.join(fx, 'stories260K/peft-f32'),
    );
    assert.equal(r.status, 0, r.stderr);
    const meta = readSafetensors(out).metadata;
    assert.deepEqual([meta.source_format, meta.gate, meta.prompt_length, meta.adapter_layers], ['peft', 'raw-per-layer', '6', '2']);
    const refused = cli(
      'finetune',
      '-m',
      stories260K,
      '-d',
      data,
      '-o',
      out,
      '--prompt-length',
      '3',
      '--resume-from-adapter',
      path.join(fx, 'stories260K/peft-f32'),
    );
    assert.match(refused.stderr, /--prompt-length cannot be given with --resume-from-adapter/);
  });

  it('serve loads a PEFT directory at start and from --adapter-dir, and answers with it', async () => {
    const model = await loadModel(tinystories656k);
    const server = createServer(model, {
      modelPath: tinystories656k,
      adapters: [{ name: 'lit', file: path.join(fx, 'tinystories656k/litgpt/lit_model.pth.adapter') }],
      adapterDir: path.join(fx, 'tinystories656k'),
      adapterLoad: { onWarning: () => {} },
    });
    const url = await server.listen('127.0.0.1', 0);
    try {
      const load = await fetch(`${url}/v1/adapters`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'peft', path: 'peft-f32' }),
      });
      assert.equal(load.status, 200, await load.text());
      for (const name of ['lit', 'peft']) {
        const res = await fetch(`${url}/v1/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model: name, prompt: 'Once', max_tokens: 3, temperature: 0 }),
        });
        assert.equal(res.status, 200, await res.clone().text());
        const j = (await res.json()) as { choices: { text: string }[] };
        assert.equal(typeof j.choices[0].text, 'string');
      }
    } finally {
      await server.close(1000);
    }
  });
});
