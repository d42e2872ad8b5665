// The fine-tuning API, driven by the official `openai` client over 127.0.0.1: files.create with
// good and bad uploads (a bad one names its line and changes nothing on the server), a job that
// is paused mid-run and resumed, whose adapter is byte for byte what finetune() writes for the
// same data and options uninterrupted (the same loop and checkpoints: exact resume), its events
// (a metrics event per step, validation loss per epoch) and its model, served and answering;
// cancel; a server stopped mid-job whose job continues exactly when the next server starts.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import OpenAI, { toFile } from 'openai';
import { createServer, finetune, loadModel, type LlamaModel, type Server } from '../src/index.js';
import { backendsUnderTest } from './backends.js';
import { tinystories656k } from './helpers.js';

const backend = backendsUnderTest().includes('native') ? 'native' : 'ts';
const BASE = 'tinystories-656k';

/** A small instruction set the tiny story model can learn something from (JSONL). */
function records(n: number): { instruction: string; output: string }[] {
  const names = ['Lily', 'Tom', 'Sue', 'Ben', 'Mia'];
  const things = ['ball', 'cat', 'tree', 'boat'];
  return Array.from({ length: n }, (_, i) => ({
    instruction: `Write a story about ${names[i % 5]} and a ${things[i % 4]}.`,
    output: `Once upon a time, ${names[i % 5]} had a ${things[i % 4]}. ${names[i % 5]} played with the ${things[i % 4]} every day.`,
  }));
}
const jsonl = (rs: object[]): string => rs.map((r) => JSON.stringify(r)).join('\n');

/** Every file under `dir` with its size (what a bad request must leave as it was). */
function snapshot(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return (fs.readdirSync(dir, { recursive: true }) as string[]).sort().map((f) => `${f}:${fs.statSync(path.join(dir, f)).size}`);
}

async function until<T>(what: string, f: () => Promise<T | undefined | null | false>, ms = 30_000): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe(`fine-tuning API (openai client) [${backend}]`, () => {
  let m: LlamaModel;
  let server: Server;
  let client: OpenAI;
  let dir: string;
  let dataDir: string;
  const hp = { n_epochs: 3, batch_size: 4, learning_rate_multiplier: 50, prompt_length: 4, adapter_layers: 2, prompt_style: 'plain' as const };

  const start = async (): Promise<void> => {
    server = createServer(m, { modelPath: tinystories656k, dataDir });
    const url = await server.listen('127.0.0.1', 0);
    client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'none', maxRetries: 0 });
  };
  const upload = async (text: string, name = 'data.jsonl') => client.files.create({ file: await toFile(Buffer.from(text), name), purpose: 'fine-tune' });
  const done = (id: string) =>
    until(`job ${id} to stop`, async () => {
      const j = await client.fineTuning.jobs.retrieve(id);
      return ['succeeded', 'failed', 'cancelled'].includes(j.status) && j;
    });
  /** Upload `n` records and start a job on them with `hp` (and `extra`). */
  const startJob = async (n: number, extra: Partial<OpenAI.FineTuning.JobCreateParams> = {}, h: object = hp) => {
    const data = records(n);
    const f = await upload(jsonl(data));
    const j = await client.fineTuning.jobs.create({
      model: BASE,
      training_file: f.id,
      hyperparameters: h as OpenAI.FineTuning.JobCreateParams.Hyperparameters,
      ...extra,
    });
    return { data, f, job: j };
  };
  /** Until the job has reported step `n`. */
  const reached = (id: string, n: number) =>
    until(`step ${n}`, async () => (await events(id)).some((e) => e.type === 'metrics' && ((e.data as { step?: number }).step ?? 0) >= n));
  const events = async (id: string) => {
    const all = [];
    for await (const e of client.fineTuning.jobs.listEvents(id, { limit: 7 })) all.push(e); // several pages: the cursor
    return all.reverse(); // oldest first
  };
  /** What finetune() writes, in this process, for the job's data and options, uninterrupted. */
  const direct = async (data: object[], dataName: string, seed: number, valSize: number): Promise<Buffer> => {
    const out = path.join(dir, `direct-${seed}.safetensors`);
    await finetune({
      model: m,
      data: data as { instruction: string; input: string; output: string }[],
      dataName,
      out,
      epochs: hp.n_epochs,
      batchSize: hp.batch_size,
      blr: 9e-3 * hp.learning_rate_multiplier,
      promptLength: hp.prompt_length,
      adapterLayers: hp.adapter_layers,
      promptStyle: hp.prompt_style,
      valSize,
      seed,
      overwrite: true,
    });
    return fs.readFileSync(out);
  };

  before(async () => {
    m = await loadModel(tinystories656k, { backend });
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'la-ftapi-'));
    dataDir = path.join(dir, 'data');
    await start();
  });
  after(async () => {
    await server.close(2000);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('files.create: a valid upload is a file object; bad ones name the line and change nothing', async () => {
    const f = await upload(jsonl(records(20)));
    assert.match(f.id, /^file-[0-9a-f]{24}$/);
    assert.equal(f.object, 'file');
    assert.equal(f.purpose, 'fine-tune');
    assert.equal(f.filename, 'data.jsonl');
    assert.equal(f.bytes, Buffer.byteLength(jsonl(records(20))));
    assert.equal((await client.files.retrieve(f.id)).id, f.id);

    const before = snapshot(dataDir);
    const listed = (await client.files.list()).data.map((x) => x.id);
    const bad = async (text: string, want: RegExp, param = 'file', purpose = 'fine-tune') => {
      await assert.rejects(
        client.files.create({ file: await toFile(Buffer.from(text), 'bad.jsonl'), purpose: purpose as 'fine-tune' }),
        (e: unknown) => e instanceof OpenAI.BadRequestError && e.param === param && want.test(e.message),
      );
    };
    const good = jsonl(records(2));
    await bad(`${good}\n{"instruction": "x", "output": oops}\n`, /bad\.jsonl: line 3(, column 31)?: invalid JSON/);
    await bad(`${good}\n{"instruction": "x"}\n`, /bad\.jsonl: line 3: missing field "output"/);
    await bad(
      '{"messages": [{"role": "user", "content": "hi"}, {"role": "system", "content": "x"}]}',
      /line 1: messages\[1\]\.role is "system", expected "assistant"/,
    );
    await bad('[{"instruction": "a", "output": "b"},\n {"instruction": "c" "output": "d"}]', /bad\.jsonl: line 2, column 22: invalid JSON/);
    await bad('', /no records/);
    await bad(good, /purpose is "assistants"/, 'purpose', 'assistants');
    await assert.rejects(
      client.files.create({ file: await toFile(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), 'bin.jsonl'), purpose: 'fine-tune' }),
      (e: unknown) => e instanceof OpenAI.BadRequestError && /not UTF-8/.test(e.message),
    );
    assert.deepEqual(snapshot(dataDir), before, 'a bad upload wrote nothing');
    // over the upload limit: 413 naming the file; a file over fastify's 1 MiB body limit is fine
    const small = createServer(m, { modelPath: tinystories656k, dataDir: path.join(dir, 'small'), maxUploadBytes: 1000 });
    const su = await small.listen('127.0.0.1', 0);
    const sc = new OpenAI({ baseURL: `${su}/v1`, apiKey: 'none', maxRetries: 0 });
    await assert.rejects(
      sc.files.create({ file: await toFile(Buffer.from(jsonl(records(20))), 'big.jsonl'), purpose: 'fine-tune' }),
      (e: unknown) => e instanceof OpenAI.APIError && e.status === 413 && e.param === 'file',
    );
    await small.close(1000);
    assert.deepEqual(snapshot(path.join(dir, 'small')), []);
    assert.deepEqual(
      (await client.files.list()).data.map((x) => x.id),
      listed,
    );
    const big = jsonl(records(12_000));
    assert.ok(big.length > 1.2e6);
    assert.equal((await upload(big, 'big.jsonl')).bytes, big.length);
  });

  it('jobs.create refuses a wrong base, an unknown file and a split that leaves nothing to train, naming the parameter', async () => {
    const f = await upload(jsonl(records(10)));
    const before = snapshot(dataDir);
    const refuse = async (body: Record<string, unknown>, param: string) =>
      assert.rejects(
        client.fineTuning.jobs.create({ model: BASE, training_file: f.id, ...body } as OpenAI.FineTuning.JobCreateParams),
        (e: unknown) => e instanceof OpenAI.BadRequestError && e.param === param,
      );
    await refuse({ model: 'gpt-4o-mini' }, 'model');
    await refuse({ training_file: 'file-nope' }, 'training_file');
    await refuse({ hyperparameters: { validation_size: 10 } }, 'hyperparameters.validation_size');
    await refuse({ hyperparameters: { adapter_layers: 3 } }, 'hyperparameters.adapter_layers');
    await refuse({ hyperparameters: { n_epochs: '3' } }, 'hyperparameters.n_epochs');
    await refuse({ hyperparameters: { warmup: 1 } }, 'hyperparameters.warmup');
    assert.deepEqual(snapshot(dataDir), before);
    assert.equal((await client.fineTuning.jobs.list()).data.length, 0);
  });

  it('a job paused mid-run and resumed: the adapter equals finetune() run uninterrupted; a metrics event per step; its model answers', async () => {
    const { data, f, job } = await startJob(120, { seed: 11, suffix: 'stories' });
    assert.equal(job.object, 'fine_tuning.job');
    assert.match(job.id, /^ftjob-[0-9a-f]{24}$/);
    assert.equal(job.hyperparameters.n_epochs, 3);
    // pause once a few steps are done (the worker finishes its step, writes the checkpoint, exits)
    await reached(job.id, 5);
    const paused = await client.fineTuning.jobs.pause(job.id);
    assert.equal(paused.status as string, 'paused');
    assert.equal((await client.fineTuning.jobs.resume(job.id)).status, 'queued');
    const j = await done(job.id);
    assert.equal(j.status, 'succeeded', JSON.stringify(j.error));
    assert.equal(j.fine_tuned_model, `ft:${BASE}:stories:${job.id.slice(6, 14)}`);

    const valSize = 12; // a tenth of 120 records
    const want = await direct(data, f.id, 11, valSize);
    assert.ok(want.equals(fs.readFileSync(path.join(dataDir, 'jobs', job.id, 'adapter.safetensors'))), 'the job wrote what finetune() writes');

    const ev = await events(job.id);
    const steps = ev.filter((e) => e.type === 'metrics' && 'train_loss' in (e.data as object)).map((e) => (e.data as { step: number }).step);
    const total = 3 * Math.ceil((120 - valSize) / 4);
    assert.deepEqual(
      steps,
      Array.from({ length: total }, (_, i) => i + 1),
    );
    const vals = ev.filter((e) => e.type === 'metrics' && 'valid_loss' in (e.data as object));
    assert.equal(vals.length, 3);
    assert.ok(ev.some((e) => /paused/.test(e.message)) && ev.some((e) => /resumed from its checkpoint/.test(e.message)));
    assert.ok(j.trained_tokens && j.trained_tokens > 0);

    const ids: string[] = [];
    for await (const x of client.models.list()) ids.push(x.id);
    assert.ok(ids.includes(j.fine_tuned_model!));
    const msg = [{ role: 'user' as const, content: 'Write a story about Lily and a ball.' }];
    const a = await client.chat.completions.create({ model: j.fine_tuned_model!, messages: msg, max_tokens: 12, temperature: 0 });
    const b = await client.chat.completions.create({ model: BASE, messages: msg, max_tokens: 12, temperature: 0 });
    assert.ok(a.choices[0].message.content);
    assert.notEqual(a.choices[0].message.content, b.choices[0].message.content, 'the fine-tuned adapter changes the answer');
  });

  it('cancel: the job stops, is cancelled, and serves no model', async () => {
    const { job } = await startJob(200, {}, { ...hp, n_epochs: 50 });
    await reached(job.id, 1);
    const c = await client.fineTuning.jobs.cancel(job.id);
    assert.equal(c.status, 'cancelled');
    const j = await client.fineTuning.jobs.retrieve(job.id);
    assert.equal(j.status, 'cancelled');
    assert.equal(j.fine_tuned_model, null);
    await assert.rejects(client.fineTuning.jobs.cancel(job.id), (e: unknown) => e instanceof OpenAI.BadRequestError);
    await assert.rejects(client.fineTuning.jobs.retrieve('ftjob-nope'), (e: unknown) => e instanceof OpenAI.NotFoundError);
    await assert.rejects(
      client.fineTuning.jobs.listEvents(job.id, { after: 'ftevent-nope' }),
      (e: unknown) => e instanceof OpenAI.BadRequestError && e.param === 'after',
    );
  });

  it('a server stopped mid-job: the next server on the same data directory continues it exactly', async () => {
    const { data, f, job } = await startJob(100, { seed: 5 });
    await reached(job.id, 5);
    // a job of another base model in the same data directory: the next server leaves it alone
    const other = path.join(dataDir, 'jobs', 'ftjob-000000000000000000000000');
    fs.mkdirSync(other);
    fs.writeFileSync(
      path.join(other, 'job.json'),
      JSON.stringify({ ...job, id: 'ftjob-000000000000000000000000', status: 'queued', base_fingerprint: 'another' }),
    );
    await server.close(5000);
    const saved = JSON.parse(fs.readFileSync(path.join(dataDir, 'jobs', job.id, 'job.json'), 'utf8')) as { status: string };
    assert.equal(saved.status, 'queued');
    assert.ok(fs.existsSync(path.join(dataDir, 'jobs', job.id, 'adapter.ckpt.safetensors')));
    await start();
    const j = await done(job.id);
    assert.equal(j.status, 'succeeded', JSON.stringify(j.error));
    const want = await direct(data, f.id, 5, 10);
    assert.ok(want.equals(fs.readFileSync(path.join(dataDir, 'jobs', job.id, 'adapter.safetensors'))), 'continued exactly');
    assert.ok(!(await client.fineTuning.jobs.list()).data.some((x) => x.id.startsWith('ftjob-0000')));
    assert.deepEqual(fs.readdirSync(other), ['job.json']);
  });
});
