// The command line as a user runs it: a real child process, stdout/stderr/exit code. Bad input
// gives one clear line naming the file and the problem, a non-zero exit and no stack trace
// (unless --verbose).

import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { assets, repoRoot, stories260K, tinystories656k } from './helpers.js';

const bin = path.join(repoRoot, 'bin/llama-adapter.js');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'llama-adapter-cli-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

function run(...args: string[]): { code: number; out: string; err: string } {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', env: { ...process.env, LLAMA_ADAPTER_BACKEND: 'ts' } });
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}

/** A user error: non-zero exit, exactly one stderr line matching `re`, no stack trace. */
function assertUserError(r: { code: number; err: string }, re: RegExp): void {
  assert.notEqual(r.code, 0);
  const lines = r.err.trim().split('\n');
  assert.equal(lines.length, 1, `expected one line, got:\n${r.err}`);
  assert.match(lines[0], re);
  assert.doesNotMatch(r.err, /\n\s+at /);
}

/** `finetune` on stories260K with the Alpaca fixture, 3 validation records and no progress bar, plus `flags` (space-separated). */
function finetuneCli(out: string, flags: string): ReturnType<typeof run> {
  const data = path.join(assets, 'data/instruct/litgpt_fixtures/alpaca.json');
  return run('finetune', '-m', stories260K, '-d', data, '-o', out, '--val-size', '3', '--no-progress', ...flags.split(' '));
}

describe('cli generate', () => {
  it('--json greedy from BOS gives the MANIFEST ids', () => {
    const r = run('generate', '--model', stories260K, '--prompt', '', '--temperature', '0', '--max-tokens', '40', '--json');
    assert.equal(r.code, 0, r.err);
    const j = JSON.parse(r.out) as { prompt_ids: number[]; ids: number[]; text: string };
    assert.deepEqual(j.prompt_ids, [1]);
    assert.deepEqual(j.ids.slice(0, 5), [403, 407, 261, 378, 432]);
    assert.match(j.text, /^Once upon a time, there was a little girl named Lily\./);
  });

  it('streams text to stdout and is reproducible with a seed', () => {
    const a = run('generate', '-m', tinystories656k, '-p', 'Once upon a time', '-n', '30', '--seed', '4');
    const b = run('generate', '-m', tinystories656k, '-p', 'Once upon a time', '-n', '30', '--seed', '4');
    assert.equal(a.code, 0, a.err);
    assert.equal(a.out, b.out);
    assert.ok(a.out.trim().length > 20);
  });

  it('missing model file', () => {
    assertUserError(run('generate', '--model', path.join(tmp, 'nope.bin')), /nope\.bin: .*(no such file|not found)/i);
  });

  it('truncated checkpoint', () => {
    const f = path.join(tmp, 'trunc.bin');
    fs.writeFileSync(f, fs.readFileSync(stories260K).subarray(0, 5000));
    assertUserError(run('generate', '--model', f, '--tokenizer', path.join(assets, 'models/stories260K/tok512.bin')), /trunc\.bin: .*(truncated|bytes)/i);
  });

  it('tokenizer that does not match the vocabulary', () => {
    assertUserError(
      run('generate', '--model', stories260K, '--tokenizer', path.join(assets, 'tokenizers/llama2/tokenizer.model')),
      /tokenizer\.model: tokenizer has 32000 tokens but the model .* has a vocabulary of 512/,
    );
  });

  it('prompt longer than the context', () => {
    const long = 'Once upon a time '.repeat(400);
    assertUserError(run('generate', '--model', stories260K, '--prompt', long), /prompt of \d+ tokens is longer than the model's context of 512 tokens/);
  });

  it('bad flag value', () => {
    const r = run('generate', '--model', stories260K, '--max-tokens', 'lots');
    assert.notEqual(r.code, 0);
    assert.match(r.err, /--max-tokens must be an integer/);
  });

  it('--verbose shows the stack', () => {
    const r = run('--verbose', 'generate', '--model', path.join(tmp, 'nope.bin'));
    assert.notEqual(r.code, 0);
    assert.match(r.err, /\n\s+at /);
  });
});

describe('cli inspect and finetune', () => {
  it('inspect a model: format, architecture, parameters, dtypes, tokenizer', () => {
    const r = run('inspect', stories260K, '--json');
    assert.equal(r.code, 0, r.err);
    const j = JSON.parse(r.out) as {
      format: string;
      architecture: { dim: number; kv_heads: number };
      parameters: number;
      dtypes: string[];
      tokenizer: { vocab_size: number };
    };
    assert.equal(j.format, 'llama2c-fp32');
    assert.equal(j.architecture.dim, 64);
    assert.equal(j.architecture.kv_heads, 4);
    assert.equal(j.tokenizer.vocab_size, 512);
    assert.ok(j.parameters > 250_000 && j.parameters < 270_000, String(j.parameters));
  });

  it('finetune writes adapter, metrics, loss curve; inspect and generate use the adapter', () => {
    const out = path.join(tmp, 'ad.safetensors');
    const r = finetuneCli(out, '--prompt-length 3 --adapter-layers 2 --epochs 1 --batch-size 5 --max-seq-len 64 --lr 0.01');
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /epoch 1: validation loss \d/);
    for (const f of [
      out,
      out.replace('.safetensors', '.metrics.jsonl'),
      out.replace('.safetensors', '.loss.svg'),
      out.replace('.safetensors', '.ckpt.safetensors'),
    ])
      assert.ok(fs.existsSync(f), f);
    const i = JSON.parse(run('inspect', out, '--json').out) as {
      gate: string;
      prompt_length: number;
      base: { dim: number };
      training_args: { prompt_style: string };
    };
    assert.equal(i.gate, 'tanh-per-head');
    assert.equal(i.prompt_length, 3);
    assert.equal(i.base.dim, 64);
    assert.equal(i.training_args.prompt_style, 'alpaca');
    const g = run('generate', '-m', stories260K, '-a', out, '-p', 'Name a color.', '-n', '8', '--json');
    assert.equal(g.code, 0, g.err);
    // the adapter's training template was applied to the prompt
    const ids = (JSON.parse(g.out) as { prompt_ids: number[] }).prompt_ids;
    assert.ok(ids.length > 40);
  });

  it('finetune on a bad record fails before training, naming file and line', () => {
    const bad = path.join(tmp, 'bad.jsonl');
    fs.writeFileSync(bad, '{"instruction":"a","output":"b"}\n{"instruction":"c","input":"d"}\n');
    assertUserError(run('finetune', '-m', stories260K, '-d', bad, '-o', path.join(tmp, 'b.safetensors')), /bad\.jsonl: line 2: missing field "output"/);
  });

  it('an adapter for another base is refused by generate', () => {
    const out = path.join(tmp, 'other-base.safetensors');
    const t = finetuneCli(out, '--prompt-length 2 --adapter-layers 1 --max-steps 1 --max-seq-len 32');
    assert.equal(t.code, 0, t.err);
    assertUserError(run('generate', '-m', tinystories656k, '-a', out), /other-base\.safetensors: adapter was trained for a base model with dim=64/);
  });
});
