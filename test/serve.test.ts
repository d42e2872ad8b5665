// The OpenAI-compatible server, driven by the official `openai` client (v6) over a real socket on
// 127.0.0.1: chat and completions, streaming and not, the usage chunk, models.list(), typed
// errors, cancellation; 64 concurrent greedy streams over 4 adapters and the base, each equal to
// the same request served alone (native batch-invariant mode, else the TypeScript backend);
// adapter loading under --adapter-dir; the 429 of a full queue.

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import OpenAI from 'openai';
import { createAdapter, createServer, loadModel, saveAdapter, type LlamaModel, type Server } from '../src/index.js';
import { setNativeFeature } from '../src/backend/native.js';
import { backendsUnderTest } from './backends.js';
import { PROMPT_STYLES } from '../src/train/prompt-styles.js';
import { gauge, repoRoot, tinystories656k } from './helpers.js';

const backend = backendsUnderTest().includes('native') ? 'native' : 'ts';
const KEY = 'sk-test-key';

describe(`serve [${backend}]`, () => {
  let m: LlamaModel;
  let server: Server;
  let url: string;
  let client: OpenAI;
  let dir: string;
  const names = ['a0', 'a1', 'a2', 'a3'];

  before(async () => {
    if (backend === 'native') assert.equal(setNativeFeature('batchInvariant', true), true);
    m = await loadModel(tinystories656k, { backend });
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'la-serve-'));
    names.forEach((n, i) =>
      saveAdapter(createAdapter(m, { promptLength: 4 + i, adapterLayers: 2, gateInit: 'random', seed: 10 + i }), path.join(dir, `${n}.safetensors`)),
    );
    server = createServer(m, {
      modelPath: tinystories656k,
      adapters: names.map((n) => ({ name: n, file: path.join(dir, `${n}.safetensors`) })),
      adapterDir: dir,
      apiKey: KEY,
      maxBatch: 16,
      maxQueue: 128,
      maxTokens: 64,
    });
    url = await server.listen('127.0.0.1', 0);
    client = new OpenAI({ baseURL: `${url}/v1`, apiKey: KEY, maxRetries: 0 });
  });
  after(async () => {
    await server.close(1000);
    if (backend === 'native') setNativeFeature('batchInvariant', false);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('models.list(): the base and every adapter, with the base as root and parent', async () => {
    const ids: string[] = [];
    for await (const x of client.models.list()) {
      ids.push(x.id);
      const e = x as unknown as { root: string; parent: string | null };
      assert.equal(e.root, 'tinystories-656k');
      assert.equal(e.parent, x.id === 'tinystories-656k' ? null : 'tinystories-656k');
    }
    assert.deepEqual(ids, ['tinystories-656k', ...names]);
  });

  it('chat: non-streaming and streaming give the same text; the usage chunk comes last with no choices', async () => {
    const req = { model: 'a1', messages: [{ role: 'user' as const, content: 'Tell me a story' }], max_tokens: 12, temperature: 0 };
    const r = await client.chat.completions.create(req);
    assert.equal(r.object, 'chat.completion');
    assert.match(r.id, /^chatcmpl-/);
    assert.equal(r.choices[0].message.role, 'assistant');
    assert.equal(r.choices[0].finish_reason, 'length');
    assert.equal(r.usage?.completion_tokens, 12);
    assert.equal(r.usage?.total_tokens, (r.usage?.prompt_tokens ?? 0) + 12);
    const chunks = [];
    for await (const c of await client.chat.completions.create({ ...req, stream: true, stream_options: { include_usage: true } })) chunks.push(c);
    assert.equal(chunks[0].choices[0].delta.role, 'assistant');
    const text = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
    assert.equal(text, r.choices[0].message.content);
    assert.equal(chunks.at(-2)?.choices[0].finish_reason, 'length');
    assert.deepEqual(chunks.at(-1)?.choices, []);
    assert.deepEqual(chunks.at(-1)?.usage, r.usage);
    // the adapter matters
    const base = await client.chat.completions.create({ ...req, model: 'tinystories-656k' });
    assert.notEqual(base.choices[0].message.content, r.choices[0].message.content);
  });

  it('completions: two prompts x n=2, stop strings, logprobs; streaming matches', async () => {
    const r = await client.completions.create({ model: 'a0', prompt: ['Once upon a time', 'The dog'], n: 2, max_tokens: 10, temperature: 0, logprobs: 2 });
    assert.equal(r.choices.length, 4);
    assert.deepEqual(
      r.choices.map((c) => c.index),
      [0, 1, 2, 3],
    );
    assert.equal(r.choices[0].text, r.choices[1].text); // greedy: both choices of a prompt agree
    const lp = r.choices[0].logprobs;
    assert.equal(lp?.tokens?.length, 10);
    assert.equal(lp?.tokens?.join(''), r.choices[0].text.replace(/^ /, lp?.tokens?.[0].startsWith(' ') ? ' ' : ''));
    for (const [i, top] of (lp?.top_logprobs ?? []).entries()) {
      const best = Math.max(...Object.values(top));
      assert.ok(Math.abs(best - (lp?.token_logprobs?.[i] ?? NaN)) < 1e-6, 'greedy picks the most likely token');
    }
    const s = [];
    for await (const c of await client.completions.create({ model: 'a0', prompt: 'Once upon a time', max_tokens: 10, temperature: 0, stream: true })) s.push(c);
    assert.equal(s.map((c) => c.choices[0]?.text ?? '').join(''), r.choices[0].text);
    const first = r.choices[0].text.trim().split(' ')[1];
    const st = await client.completions.create({ model: 'a0', prompt: 'Once upon a time', max_tokens: 10, temperature: 0, stop: [first] });
    assert.equal(st.choices[0].finish_reason, 'stop');
    assert.equal(st.choices[0].text, r.choices[0].text.slice(0, r.choices[0].text.indexOf(first)));
  });

  it('errors surface as the client typed errors, in OpenAI shape, naming the parameter', async () => {
    await assert.rejects(client.completions.create({ model: 'nope', prompt: 'x' }), (e: unknown) => e instanceof OpenAI.NotFoundError && e.param === 'model');
    await assert.rejects(
      client.completions.create({ model: 'a0', prompt: 'x', temperature: '0.5' as unknown as number }),
      (e: unknown) => e instanceof OpenAI.BadRequestError && e.param === 'temperature',
    );
    await assert.rejects(
      client.completions.create({ model: 'a0', prompt: 'x', max_tokens: 65 }),
      (e: unknown) => e instanceof OpenAI.BadRequestError && e.param === 'max_tokens',
    );
    await assert.rejects(
      client.completions.create({ model: 'a0', prompt: 'x', n: 17 }),
      (e: unknown) => e instanceof OpenAI.BadRequestError && e.param === 'n',
    );
    await assert.rejects(
      client.completions.create({ model: 'a0', prompt: 'word '.repeat(600), max_tokens: 1 }),
      (e: unknown) => e instanceof OpenAI.BadRequestError && e.code === 'context_length_exceeded',
    );
    const wrong = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'sk-wrong', maxRetries: 0 });
    await assert.rejects(wrong.models.list(), (e: unknown) => e instanceof OpenAI.AuthenticationError);
    const res = await fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: '{"model":',
    });
    assert.equal(res.status, 400);
    const body = (await res.json()) as { error: { message: string; type: string } };
    assert.equal(body.error.type, 'invalid_request_error');
  });

  it('an aborted stream frees its slot at once', async () => {
    const ac = new AbortController();
    const stream = await client.completions.create({ model: 'a2', prompt: 'Once', max_tokens: 64, temperature: 0.8, stream: true }, { signal: ac.signal });
    let n = 0;
    try {
      for await (const _ of stream) if (++n === 3) ac.abort();
    } catch (e) {
      assert.ok(e instanceof OpenAI.APIUserAbortError, String(e));
    }
    assert.equal(n, 3);
    assert.equal(await gauge(url, 'llama_adapter_active_slots', 0), 0);
  });

  it('64 concurrent greedy streams over 4 adapters and the base: 0 errors, each equal to the request alone', async () => {
    const models = ['tinystories-656k', ...names];
    const prompts = ['Once upon a time', 'The dog', 'Lily saw', 'Tom was', 'One day', 'The sun', 'Mom said', 'A bird'];
    const reqs = Array.from({ length: 64 }, (_, i) => ({ model: models[i % 5], prompt: prompts[(i * 3) % 8], max_tokens: 8 + (i % 5) * 4, temperature: 0 }));
    const run = async (r: (typeof reqs)[number]): Promise<string> => {
      let text = '';
      for await (const c of await client.completions.create({ ...r, stream: true })) text += c.choices[0]?.text ?? '';
      return text;
    };
    const alone: string[] = [];
    for (const r of reqs) alone.push(await run(r));
    const together = await Promise.all(reqs.map(run));
    const differ = together.filter((t, i) => t !== alone[i]).length;
    assert.equal(differ, 0, `${differ} of 64 responses differ from the request served alone`);
  });

  it('adapters load from the adapter directory and unload while serving; paths outside it are refused', async () => {
    const post = (p: string, body: unknown) =>
      fetch(`${url}${p}`, { method: 'POST', headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    assert.equal((await post('/v1/adapters', { name: 'fresh', path: 'a3.safetensors' })).status, 200);
    const a = await client.completions.create({ model: 'fresh', prompt: 'The dog', max_tokens: 6, temperature: 0 });
    const b = await client.completions.create({ model: 'a3', prompt: 'The dog', max_tokens: 6, temperature: 0 });
    assert.equal(a.choices[0].text, b.choices[0].text);
    const out = await post('/v1/adapters', { name: 'evil', path: '../../etc/passwd' });
    assert.ok(out.status === 400 || out.status === 404);
    assert.equal(((await out.json()) as { error: { param: string } }).error.param, 'path');
    // unload while a request on it runs: the request finishes, later ones get 404
    const running = (await client.completions.create({ model: 'fresh', prompt: 'The dog', max_tokens: 30, temperature: 0, stream: true }))[
      Symbol.asyncIterator
    ]();
    assert.equal((await running.next()).done, false); // it holds a slot now
    const del = await fetch(`${url}/v1/adapters/fresh`, { method: 'DELETE', headers: { authorization: `Bearer ${KEY}` } });
    assert.equal(del.status, 200);
    let last = '';
    for (let r = await running.next(); !r.done; r = await running.next()) last = r.value.choices[0]?.finish_reason ?? last;
    assert.equal(last, 'length');
    await assert.rejects(client.completions.create({ model: 'fresh', prompt: 'x' }), (e: unknown) => e instanceof OpenAI.NotFoundError);
  });

  it("chat prompts: the adapter's training template, else the plain format; the model's jinja chat_template when it has one", async () => {
    const chatVsCompletion = async (c: OpenAI, model: string, prompt: string): Promise<void> => {
      const messages = [
        { role: 'system' as const, content: 'Be brief' },
        { role: 'user' as const, content: 'Tell a story' },
      ];
      const chat = await c.chat.completions.create({ model, messages, max_tokens: 8, temperature: 0 });
      const comp = await c.completions.create({ model, prompt, max_tokens: 8, temperature: 0 });
      assert.equal(chat.choices[0].message.content, comp.choices[0].text, model);
      assert.equal(chat.usage?.prompt_tokens, comp.usage?.prompt_tokens, model);
    };
    // no template in the model directory: one "role: content" line per message, then "assistant:"
    await chatVsCompletion(client, 'tinystories-656k', 'system: Be brief\nuser: Tell a story\nassistant:');
    // an adapter trained with the alpaca style: the last user message is the instruction
    const a = createAdapter(m, { promptLength: 3, adapterLayers: 2, gateInit: 'random', seed: 99 });
    a.meta.training_args = JSON.stringify({ prompt_style: 'alpaca' });
    saveAdapter(a, path.join(dir, 'alpaca.safetensors'));
    const styled = createServer(m, { modelPath: tinystories656k, adapters: [{ name: 'alp', file: path.join(dir, 'alpaca.safetensors') }] });
    const su = await styled.listen('127.0.0.1', 0);
    const sc = new OpenAI({ baseURL: `${su}/v1`, apiKey: 'none', maxRetries: 0 });
    await chatVsCompletion(sc, 'alp', PROMPT_STYLES.alpaca.prompt({ instruction: 'Tell a story', input: '' }));
    await styled.close(1000);
    // a copy of the model whose tokenizer_config.json carries a chat_template
    const mdir = path.join(dir, 'with-template');
    fs.cpSync(tinystories656k, mdir, { recursive: true });
    const cfgFile = path.join(mdir, 'tokenizer_config.json');
    const cfg = JSON.parse(fs.readFileSync(cfgFile, 'utf8')) as Record<string, unknown>;
    cfg.chat_template =
      "{{ bos_token }}{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}";
    fs.writeFileSync(cfgFile, JSON.stringify(cfg));
    const templated = createServer(m, { modelPath: mdir, modelName: 'base' });
    const tu = await templated.listen('127.0.0.1', 0);
    await chatVsCompletion(new OpenAI({ baseURL: `${tu}/v1`, apiKey: 'none', maxRetries: 0 }), 'base', '<system>Be brief\n<user>Tell a story\n<assistant>');
    await templated.close(1000);
  });

  it('a full queue answers 429 (RateLimitError) and the rest are served', async () => {
    const small = createServer(m, { modelPath: tinystories656k, maxBatch: 1, maxQueue: 1 });
    const u = await small.listen('127.0.0.1', 0);
    const c = new OpenAI({ baseURL: `${u}/v1`, apiKey: 'none', maxRetries: 0 });
    const rs = await Promise.allSettled(
      Array.from({ length: 4 }, () => c.completions.create({ model: 'tinystories-656k', prompt: 'Once', max_tokens: 20, temperature: 0 })),
    );
    const limited = rs.filter((r) => r.status === 'rejected' && r.reason instanceof OpenAI.RateLimitError).length;
    assert.equal(limited, 2);
    assert.equal(rs.filter((r) => r.status === 'fulfilled').length, 2);
    await small.close(1000);
  });
});

describe('llama-adapter serve (the command)', () => {
  it('SIGTERM: running streams finish, new connections are refused, exit code 0', async () => {
    const child = spawn(process.execPath, [path.join(repoRoot, 'bin/llama-adapter.js'), 'serve', '-m', tinystories656k, '--port', '0', '--backend', backend], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const [line] = (await once(child.stdout, 'data')) as [Buffer];
    const url = line.toString().trim();
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);
    const c = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'none', maxRetries: 0 });
    const it = (await c.completions.create({ model: 'tinystories-656k', prompt: 'Once', max_tokens: 40, temperature: 0, stream: true }))[
      Symbol.asyncIterator
    ]();
    assert.equal((await it.next()).done, false);
    child.kill('SIGTERM');
    let last = '';
    for (let r = await it.next(); !r.done; r = await it.next()) last = r.value.choices[0]?.finish_reason ?? last;
    assert.equal(last, 'length');
    const [code] = (await once(child, 'exit')) as [number];
    assert.equal(code, 0, stderr);
    assert.match(stderr, /SIGTERM: finishing running requests/);
    await assert.rejects(fetch(`${url}/health`));
  });
});
