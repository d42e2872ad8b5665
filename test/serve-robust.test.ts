// The server under hostile input, in a run that stops by itself: 10,000 malformed or mutated
// request bodies (wrong types, missing and unknown fields, huge numbers, deep nesting, invalid
// UTF-8, truncated JSON, oversized bodies) each get a 4xx in OpenAI's error shape (or, when the
// mutation happens to leave a valid request, a 200), never a 5xx, and the server keeps serving;
// 3 rounds of 100 clients that disconnect mid-stream leave 0 active slots and no memory growth.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../src/core/rng.js';
import { createServer, loadModel, type Server } from '../src/index.js';
import { backendsUnderTest } from './backends.js';
import { gauge, tinystories656k } from './helpers.js';

const MUTANTS = 10_000;
const BUDGET_MS = 90_000; // the fuzz loop stops here even if not all mutants were sent

const VALID: Record<string, unknown>[] = [
  { model: 'tinystories-656k', prompt: 'Once upon a time', max_tokens: 2, temperature: 0 },
  { model: 'tinystories-656k', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2, temperature: 0.7, top_p: 0.9, n: 1, stop: ['.'], seed: 3 },
  { model: 'tinystories-656k', prompt: ['a', 'b'], max_tokens: 1, stream: true, stream_options: { include_usage: true }, logprobs: 1 },
];

function deep(n: number): unknown {
  let x: unknown = 0;
  for (let i = 0; i < n; i++) x = [x];
  return x;
}

/** One mutated body: [path, bytes]. */
function mutant(rng: Rng): [string, Buffer] {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rng.uniform() * xs.length)];
  const base = structuredClone(pick(VALID));
  const url = 'messages' in base ? '/v1/chat/completions' : '/v1/completions';
  const keys = [...Object.keys(base), 'bogus', 'max_completion_tokens', 'top_logprobs', 'presence_penalty', 'frequency_penalty', 'user'];
  const weird = [
    '0.5',
    -1,
    1e308,
    -1e308,
    2 ** 53 + 1,
    null,
    true,
    [],
    {},
    'x'.repeat(5000),
    [1, 'a', null],
    { $ref: '#' },
    deep(200),
    '\u0000\ud800',
    1.5,
    0,
    [[0]],
  ];
  const kind = Math.floor(rng.uniform() * 8);
  if (kind <= 2) base[pick(keys)] = pick(weird);
  else if (kind === 3) delete base[pick(Object.keys(base))];
  else if (kind === 4 && 'messages' in base) (base.messages as Record<string, unknown>[])[0][pick(['role', 'content', 'name', 'extra'])] = pick(weird);
  let json = JSON.stringify(base);
  if (kind === 5) {
    // deep nesting as text (no recursion on our side): a field's value becomes [[[...0...]]]
    const n = 1 + Math.floor(rng.uniform() * 20000);
    json = json.replace(/:("[^"]*"|[^,{}[\]]+)/, `:${'['.repeat(n)}0${']'.repeat(n)}`);
  }
  let bytes = Buffer.from(json);
  if (kind === 6) bytes = bytes.subarray(0, Math.floor(rng.uniform() * bytes.length)); // truncated
  if (kind === 7) {
    // byte overwrites, invalid UTF-8 included
    bytes = Buffer.from(bytes);
    for (let i = 0; i < 1 + Math.floor(rng.uniform() * 4); i++) bytes[Math.floor(rng.uniform() * bytes.length)] = Math.floor(rng.uniform() * 256);
  }
  if (rng.uniform() < 0.01) bytes = Buffer.concat([bytes, Buffer.alloc(70_000, 0x20)]); // over the body limit
  return [url, bytes];
}

const backend = backendsUnderTest().includes('native') ? 'native' : 'ts';

describe(`serve robustness [${backend}]`, () => {
  let server: Server;
  let url: string;
  before(async () => {
    const m = await loadModel(tinystories656k, { backend });
    server = createServer(m, { modelPath: tinystories656k, maxBatch: 8, maxQueue: 4096, maxTokens: 4, bodyLimit: 64 * 1024 });
    url = await server.listen('127.0.0.1', 0);
  });
  after(() => server.close(1000));

  it(`${MUTANTS} mutated bodies: each a 4xx in OpenAI's shape or a valid 200; never a 5xx; still serving`, async (t) => {
    const rng = new Rng(7);
    const counts = new Map<number, number>();
    const bad: string[] = [];
    const t0 = Date.now();
    let sent = 0;
    const worker = async (): Promise<void> => {
      while (sent < MUTANTS && Date.now() - t0 < BUDGET_MS) {
        sent++;
        const [p, body] = mutant(rng);
        const res = await fetch(`${url}${p}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: new Uint8Array(body) });
        const text = await res.text();
        counts.set(res.status, (counts.get(res.status) ?? 0) + 1);
        if (res.status >= 400 && res.status < 500) {
          const e = (JSON.parse(text) as { error?: { message?: unknown; type?: unknown; param?: unknown; code?: unknown } }).error;
          if (!e || typeof e.message !== 'string' || typeof e.type !== 'string' || !('param' in e) || !('code' in e))
            bad.push(`${res.status}: ${text.slice(0, 200)}`);
        } else if (res.status !== 200) bad.push(`${res.status}: ${text.slice(0, 200)} for ${body.subarray(0, 200).toString()}`);
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
    t.diagnostic(`${sent} mutants, statuses ${JSON.stringify([...counts].sort((a, b) => a[0] - b[0]))}`);
    assert.deepEqual(bad.slice(0, 5), []);
    assert.ok(sent >= 2000, `only ${sent} mutants in ${BUDGET_MS} ms`);
    const four = [...counts].filter(([s]) => s >= 400 && s < 500).reduce((a, [, n]) => a + n, 0);
    assert.ok(four > sent / 2, `statuses ${JSON.stringify([...counts])}`);
    const ok = await fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(VALID[0]) });
    assert.equal(ok.status, 200);
    assert.equal(await gauge(url, 'llama_adapter_active_slots', 0), 0);
  });

  it('3 rounds of 100 clients that disconnect mid-stream: 0 active slots after each, no memory growth', async () => {
    const rss: number[] = [];
    for (let round = 0; round < 3; round++) {
      await Promise.all(
        Array.from({ length: 100 }, async (_, i) => {
          const ac = new AbortController();
          const body = JSON.stringify({ model: 'tinystories-656k', prompt: `Story ${i}`, max_tokens: 4, temperature: 0.8, stream: true });
          try {
            const res = await fetch(`${url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body, signal: ac.signal });
            const reader = res.body?.getReader();
            await reader?.read(); // the role-less first chunk of a completion arrives with its first token
            ac.abort();
          } catch {
            // aborted while connecting: also a disconnect
          }
        }),
      );
      assert.equal(await gauge(url, 'llama_adapter_active_slots', 0), 0, `round ${round}`);
      assert.equal(await gauge(url, 'llama_adapter_queue_length', 0), 0, `round ${round}`);
      rss.push(process.memoryUsage().rss / 2 ** 20);
    }
    assert.ok(rss[2] - rss[0] < 40, `rss grew ${rss.map((x) => x.toFixed(0)).join(' -> ')} MB`);
  });
});
