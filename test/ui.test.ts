// The web UI in a real browser: Debian's Chromium driven by playwright-core, headless, against a
// real server on 127.0.0.1. Chat (text streams in; Stop mid-stream leaves the server with 0
// active slots and the shown text a proper prefix of the full answer), Compare (base + 2 adapters
// in 3 columns, batched together, each equal to the request sent alone through the API, greedy),
// Adapters (one heat-map cell per (layer, head) holding the file's gate through its convention;
// load and unload), Fine-tuning (upload, start, the loss chart gains points, the job finishes, its
// model is in the picker and answers), an axe-core scan of every page (no serious or critical
// violations), no console errors, a narrow window without horizontal scrolling, and screenshots
// of each page (test-output/ui/, or $LLAMA_ADAPTER_SCREENSHOTS).

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { AxeBuilder } from '@axe-core/playwright';
import OpenAI from 'openai';
import type { BrowserContext, Page } from 'playwright-core';
import { launchChromium } from './chromium.js';
import { createAdapter, createServer, loadModel, saveAdapter, type LlamaModel, type Server } from '../src/index.js';
import { setNativeFeature } from '../src/backend/native.js';
import { readSafetensors } from '../src/core/safetensors.js';
import { backendsUnderTest } from './backends.js';
import { gauge, repoRoot, tinystories656k } from './helpers.js';

const backend = backendsUnderTest().includes('native') ? 'native' : 'ts';
const SHOTS = process.env.LLAMA_ADAPTER_SCREENSHOTS ?? path.join(repoRoot, 'test-output', 'ui');
const BASE = 'tinystories-656k';

describe(`web UI in Chromium [${backend}]`, () => {
  let m: LlamaModel;
  let server: Server;
  let url: string;
  let client: OpenAI;
  let dir: string;
  let ctx: BrowserContext;
  let page: Page;
  const consoleErrors: string[] = [];
  // every engine step goes through here: the tests may slow it or watch the batch
  let onStep: () => void = () => {};

  before(async () => {
    if (backend === 'native') assert.equal(setNativeFeature('batchInvariant', true), true);
    m = await loadModel(tinystories656k, { backend });
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'la-ui-'));
    const adapters = path.join(dir, 'adapters');
    fs.mkdirSync(adapters);
    for (const [i, n] of ['a0', 'a1', 'spare'].entries())
      saveAdapter(createAdapter(m, { promptLength: 4 + i, adapterLayers: 2, gateInit: 'random', seed: 20 + i }), path.join(adapters, `${n}.safetensors`));
    server = createServer(m, {
      modelPath: tinystories656k,
      adapters: ['a0', 'a1'].map((n) => ({ name: n, file: path.join(adapters, `${n}.safetensors`) })),
      adapterDir: adapters,
      dataDir: path.join(dir, 'data'),
      maxTokens: 400,
    });
    const engine = server.scheduler.engine;
    const step = engine.stepAsync.bind(engine);
    engine.stepAsync = () => {
      onStep();
      return step();
    };
    url = await server.listen('127.0.0.1', 0);
    client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'none', maxRetries: 0 });
    fs.mkdirSync(SHOTS, { recursive: true });
    ctx = await launchChromium(path.join(dir, 'profile'), ['--disable-gpu']);
    page = ctx.pages()[0] ?? (await ctx.newPage());
    page.on('console', (msg) => {
      if (msg.type() === 'error') consoleErrors.push(msg.text());
    });
    page.on('pageerror', (e) => consoleErrors.push(e.message));
  });
  after(async () => {
    await ctx?.close();
    await server?.close(2000);
    if (backend === 'native') setNativeFeature('batchInvariant', false);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** No serious or critical axe-core violations on the page as it is now. */
  const axe = async (name: string): Promise<void> => {
    const r = await new AxeBuilder({ page }).analyze();
    const bad = r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
    assert.deepEqual(
      bad.map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`),
      [],
      `axe on ${name}`,
    );
  };
  const shot = (name: string) => page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
  const setNumber = async (label: string, v: string) => {
    await page.getByLabel(label, { exact: true }).fill(v);
    await page.getByLabel(label, { exact: true }).dispatchEvent('change');
  };
  const lastAnswer = () => page.locator('.turn[data-role="assistant"] .text').last();

  it('chat: an adapter answers as a stream; Stop mid-stream frees the slot; the text shown is a prefix of the full answer', async () => {
    await page.goto(`${url}/#/chat`);
    await page.getByLabel('Model').selectOption('a1');
    await setNumber('Temperature', '0.8');
    await setNumber('Top-p', '0.95');
    await setNumber('Max tokens', '400');
    await setNumber('Seed', '7');
    const prompt = 'Tell me a story about a dog';
    await page.getByLabel('Message', { exact: true }).fill(prompt);
    onStep = () => {
      const t = performance.now() + 20; // 20 ms a step: the stream lasts long enough to stop it mid-way
      while (performance.now() < t);
    };
    try {
      await page.getByRole('button', { name: 'Send' }).click();
      const seen = new Set<number>();
      for (const t0 = Date.now(); seen.size < 3 && Date.now() - t0 < 10_000; ) {
        const n = ((await lastAnswer().textContent()) ?? '').replace(/^…$/, '').length;
        if (n > 0) seen.add(n);
        await page.waitForTimeout(30);
      }
      assert.ok(seen.size >= 3, `the answer grew in steps (${[...seen]})`);
      assert.ok(server.scheduler.active > 0, 'still generating when Stop is pressed');
      await page.getByRole('button', { name: 'Stop' }).click();
      await page.locator('.turn .note', { hasText: 'stopped' }).waitFor();
    } finally {
      onStep = () => {};
    }
    assert.equal(await gauge(url, 'llama_adapter_active_slots', 0), 0);
    assert.equal(server.scheduler.active, 0);
    const shown = (await lastAnswer().textContent()) ?? '';
    const full = await client.chat.completions.create({
      model: 'a1',
      messages: [{ role: 'user', content: prompt }],
      temperature: 0.8,
      top_p: 0.95,
      max_tokens: 400,
      seed: 7,
    });
    const text = full.choices[0].message.content ?? '';
    assert.ok(
      shown.length > 0 && shown.length < text.length && text.startsWith(shown),
      `shown ${JSON.stringify(shown)} is a proper prefix of ${JSON.stringify(text)}`,
    );
    // the conversation is kept in the browser, and exported as JSON
    const stored = await page.evaluate(() => localStorage.getItem('llama-adapter.conversations'));
    assert.match(stored ?? '', /Tell me a story about a dog/);
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Export JSON' }).click()]);
    const exported = JSON.parse(fs.readFileSync(await download.path(), 'utf8')) as {
      model: string;
      turns: { role: string; content: string; stopped?: boolean }[];
    }[];
    assert.equal(exported[0].model, 'a1');
    assert.deepEqual(
      exported[0].turns.map((t) => [t.role, t.content, t.stopped ?? false]),
      [
        ['user', prompt, false],
        ['assistant', shown, true],
      ],
    );
    await axe('chat');
    await shot('chat');
  });

  it('compare: base + 2 adapters in 3 columns, in one batch, each equal to the request alone (greedy), with tokens/s', async () => {
    await page.goto(`${url}/#/compare`);
    await page.getByLabel('a1', { exact: true }).waitFor();
    await setNumber('Temperature', '0');
    await setNumber('Max tokens', '32');
    const prompt = 'Once upon a time there was a cat';
    await page.getByLabel('Prompt').fill(prompt);
    let widest = 0;
    onStep = () => {
      widest = Math.max(widest, server.scheduler.active);
    };
    await page.getByRole('button', { name: 'Compare' }).click();
    await page.locator('.column[data-done="true"]').nth(2).waitFor();
    onStep = () => {};
    assert.equal(widest, 3, 'the three requests shared engine steps');
    const cols = page.locator('.column');
    assert.equal(await cols.count(), 3);
    for (let i = 0; i < 3; i++) {
      const model = (await cols.nth(i).getAttribute('data-model')) ?? '';
      const shown = (await cols.nth(i).locator('.text').textContent()) ?? '';
      const alone = await client.chat.completions.create({ model, messages: [{ role: 'user', content: prompt }], temperature: 0, max_tokens: 32 });
      assert.equal(shown, alone.choices[0].message.content, model);
      assert.match((await cols.nth(i).locator('.stats').textContent()) ?? '', /^\d+ tokens · [\d.]+ tok\/s · first token \d+ ms$/);
    }
    assert.deepEqual(await cols.evaluateAll((els) => els.map((e) => e.getAttribute('data-model'))), [BASE, 'a0', 'a1']);
    await axe('compare');
    await shot('compare');
  });

  it("adapters: the gate heat map has one cell per (layer, head) holding the file's gate through its convention; load and unload", async () => {
    await page.goto(`${url}/#/adapters`);
    await page.getByRole('button', { name: 'Show the details and gates of a1' }).click();
    await page.locator('figcaption', { hasText: 'a1' }).waitFor();
    const cells = page.locator('table.heatmap td');
    const { nHeads, nLayers } = m.config;
    assert.equal(await cells.count(), 2 * nHeads);
    const got = await cells.evaluateAll((tds) => tds.map((td) => [Number(td.dataset.layer), Number(td.dataset.head), Number(td.dataset.value)]));
    const f = readSafetensors(path.join(dir, 'adapters', 'a1.safetensors'));
    const want = [];
    for (let l = nLayers - 2; l < nLayers; l++) {
      const g = f.tensorF32(`layers.${l}.adaption_gate`); // tanh-per-head: the effective gate is tanh(g)
      for (let h = 0; h < nHeads; h++) want.push([l, h, Math.tanh(g[h])]);
    }
    assert.equal(got.length, want.length);
    for (const [i, [l, h, v]] of got.entries()) {
      assert.deepEqual([l, h], want[i].slice(0, 2));
      assert.ok(Math.abs(v - want[i][2]) < 1e-6, `layer ${l} head ${h}: ${v} vs ${want[i][2]}`);
    }
    await axe('adapters');
    await shot('adapters');
    // load a file from the adapter directory, then unload it
    await page.getByLabel('File in the adapter directory').selectOption('spare.safetensors');
    await page.getByLabel('Name', { exact: true }).fill('spare');
    await page.getByRole('button', { name: 'Load', exact: true }).click();
    await page.getByRole('button', { name: 'Unload spare' }).waitFor();
    assert.ok(server.adapters.get('spare'));
    await page.getByRole('button', { name: 'Unload spare' }).click();
    await page.getByText('Unloaded spare').waitFor();
    assert.equal(server.adapters.get('spare'), undefined);
  });

  it('fine-tuning: upload, start, the loss chart gains points, the job finishes, its model is in the picker and answers', async () => {
    const names = ['Lily', 'Tom', 'Sue', 'Ben', 'Mia'];
    const data = Array.from({ length: 160 }, (_, i) =>
      JSON.stringify({
        messages: [
          { role: 'user', content: `Write a story about ${names[i % 5]}.` },
          { role: 'assistant', content: `Once upon a time, ${names[i % 5]} went to the park. ${names[i % 5]} was happy.` },
        ],
      }),
    );
    const file = path.join(dir, 'stories.jsonl');
    fs.writeFileSync(file, data.join('\n'));
    await page.goto(`${url}/#/finetune`);
    await page.getByLabel(/^Training data/).setInputFiles(file);
    await page.getByLabel('Epochs').fill('4');
    await page.getByLabel('Learning rate multiplier').fill('50');
    await page.getByLabel('Prompt length (K)').fill('4');
    await page.getByLabel('Adapted layers (L)').fill('2');
    await page.getByLabel('Prompt style').selectOption('plain');
    await page.getByRole('button', { name: 'Start fine-tuning' }).click();
    const chart = page.locator('.chart').first();
    const seen = new Set<number>();
    const badge = page.locator('#job-title .badge');
    const counts: number[] = []; // the chart's point count at each look: it only grows
    for (const t0 = Date.now(); (await badge.textContent()) !== 'succeeded'; ) {
      counts.push(Number((await chart.getAttribute('data-points')) ?? 0));
      seen.add(counts.at(-1)!);
      assert.ok(Date.now() - t0 < 60_000, 'the job finished within a minute');
      await page.waitForTimeout(20);
    }
    await page.getByRole('button', { name: /^Chat with ft:/ }).waitFor();
    const total = 4 * Math.ceil((160 - 16) / 4);
    await page.waitForFunction((n) => document.querySelector('.chart')?.getAttribute('data-points') === String(n), total);
    assert.ok(
      counts.every((n, i) => i === 0 || n >= counts[i - 1]),
      `the chart never lost points (${counts.join(' ')})`,
    );
    const partial = [...seen].filter((n) => n > 0 && n < total);
    assert.ok(partial.length >= 2, `the chart gained points while training (saw ${[...seen].sort((a, b) => a - b)})`);
    assert.match((await page.locator('.progress span').textContent()) ?? '', new RegExp(`step ${total} of ${total}`));
    await axe('fine-tuning');
    await shot('finetune');

    const job = (await client.fineTuning.jobs.list()).data[0];
    assert.equal(job.status, 'succeeded');
    const ft = job.fine_tuned_model!;
    await page.getByRole('button', { name: `Chat with ${ft}` }).click();
    await page.waitForFunction((id) => (document.getElementById('chat-model') as HTMLSelectElement | null)?.value === id, ft);
    // the picker's options are re-rendered when the model list refreshes: wait for the label, not one read of it
    await page.waitForFunction((id) => [...document.querySelectorAll('#chat-model option')].some((o) => o.textContent === id), ft);
    await setNumber('Temperature', '0');
    await setNumber('Max tokens', '16');
    await page.getByLabel('Message', { exact: true }).focus();
    await page.keyboard.type('Write a story about Tom.');
    await page.keyboard.press('Enter'); // Enter sends
    await page.getByText(/^Answered: \d+ tokens/).waitFor();
    const alone = await client.chat.completions.create({
      model: ft,
      messages: [{ role: 'user', content: 'Write a story about Tom.' }],
      temperature: 0,
      max_tokens: 16,
    });
    assert.equal(await lastAnswer().textContent(), alone.choices[0].message.content);
    await shot('chat-finetuned');

    // the trained adapter beside the base, and its gates: trained from zero, they have opened
    await page.goto(`${url}/#/compare`);
    for (const a of ['a0', 'a1']) await page.getByLabel(a, { exact: true }).uncheck();
    await page.getByLabel('Prompt').fill('Write a story about Tom.');
    await page.getByRole('button', { name: 'Compare' }).click();
    await page.locator('.column[data-done="true"]').nth(1).waitFor();
    await shot('compare-finetuned');
    await page.goto(`${url}/#/adapters`);
    await page.getByRole('button', { name: `Show the details and gates of ${ft}` }).click();
    await page.locator('figcaption', { hasText: ft }).waitFor();
    const gates = await page.locator('table.heatmap td').evaluateAll((tds) => tds.map((td) => Number(td.dataset.value)));
    assert.equal(gates.length, 2 * m.config.nHeads);
    assert.ok(Math.max(...gates.map(Math.abs)) > 0.01, 'zero-initialised gates have opened in training');
    await shot('adapters-finetuned');
  });

  it('fine-tuning: pause keeps the chart, resume continues it, and the job ends with each step charted once', async () => {
    await page.goto(`${url}/#/finetune`);
    await page.getByLabel(/^Training data/).setInputFiles(path.join(dir, 'stories.jsonl')); // written by the test above
    await page.getByLabel('Epochs').fill('4');
    await page.getByLabel('Prompt length (K)').fill('4');
    await page.getByLabel('Adapted layers (L)').fill('2');
    const title = page.locator('#job-title');
    const before = await title.textContent(); // the job above, until the new one is shown
    await page.getByRole('button', { name: 'Start fine-tuning' }).click();
    await page.waitForFunction((t) => document.getElementById('job-title')?.textContent !== t, before);
    const chart = page.locator('.chart').first();
    const badge = page.locator('#job-title .badge');
    const points = async () => Number((await chart.getAttribute('data-points')) ?? 0);
    const counts: number[] = [];
    const watch = async (until: () => Promise<boolean>, what: string) => {
      for (const t0 = Date.now(); !(await until()); ) {
        counts.push(await points());
        assert.ok(Date.now() - t0 < 60_000, `${what} within a minute`);
        await page.waitForTimeout(20);
      }
    };
    await watch(async () => (await points()) >= 8, 'the chart has 8 points');
    await page.getByRole('button', { name: 'Pause' }).click();
    await watch(async () => (await badge.textContent()) === 'paused', 'the job paused');
    await page.waitForTimeout(300); // the stream has ended and the step in flight is in
    const atPause = await points();
    const total = 4 * Math.ceil((160 - 16) / 4);
    assert.ok(atPause >= 8 && atPause < total, `paused at ${atPause} of ${total} steps`);
    await page.getByRole('button', { name: 'Resume' }).click();
    await watch(async () => (await badge.textContent()) === 'succeeded', 'the resumed job finished');
    await page.waitForFunction((n) => document.querySelector('.chart')?.getAttribute('data-points') === String(n), total);
    counts.push(await points());
    assert.ok(
      counts.every((n, i) => i === 0 || n >= counts[i - 1]),
      `the chart never lost points across pause and resume (${counts.join(' ')})`,
    );
    assert.match((await page.locator('.progress span').textContent()) ?? '', new RegExp(`step ${total} of ${total}`));
    const [job] = (await client.fineTuning.jobs.list()).data;
    assert.equal(job.status, 'succeeded');
    const steps = (await client.fineTuning.jobs.listEvents(job.id, { limit: 1000 })).data
      .filter((e) => e.type === 'metrics' && (e.data as { train_loss?: number }).train_loss !== undefined)
      .map((e) => (e.data as { step: number }).step)
      .sort((a, b) => a - b);
    assert.deepEqual(
      steps,
      Array.from({ length: total }, (_, i) => i + 1),
      'the server reports each step once',
    );
  });

  it('a server with --api-key: the page says the key is missing until it is entered in the header', async () => {
    const locked = createServer(m, { modelPath: tinystories656k, apiKey: 'sk-ui' });
    const lu = await locked.listen('127.0.0.1', 0);
    const earlier = consoleErrors.length;
    try {
      await page.goto(`${lu}/#/chat`);
      await page.getByText('Missing API key').waitFor();
      await page.getByText('API key', { exact: true }).click(); // the header's settings
      await page.getByLabel(/^Bearer key/).fill('sk-ui');
      await page.reload();
      await page.locator('#chat-model option', { hasText: `${BASE} (base)` }).waitFor({ state: 'attached' });
      assert.equal(await page.locator('.error').count(), 0);
      // the browser logs the refused request: expected here, and only that
      assert.ok(consoleErrors.slice(earlier).every((e) => /status of 401/.test(e)));
      consoleErrors.length = earlier;
    } finally {
      await locked.close(1000);
    }
  });

  it('a narrow window: every page fits without sideways scrolling; no console errors', async () => {
    await page.setViewportSize({ width: 400, height: 860 });
    for (const p of ['chat', 'compare', 'adapters', 'finetune']) {
      await page.goto(`${url}/#/${p}`);
      await page.locator('h1').waitFor();
      await page.waitForTimeout(100);
      const [scroll, client] = await page.evaluate(() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]);
      assert.ok(scroll <= client, `${p}: page is ${scroll}px wide in a ${client}px window`);
      await shot(`${p}-narrow`);
    }
    await page.setViewportSize({ width: 1280, height: 900 });
    assert.deepEqual(consoleErrors, []);
  });
});
