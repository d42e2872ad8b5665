// The library in a real page: headless Chromium (Debian's, with WebGPU on its SwiftShader Vulkan
// driver) opens the UI's "In the browser" page against a real server, loads tinystories-656k from
// it into the page on WebGPU, generates greedily (the same ids as Node), trains an adapter for 20
// steps (the loss goes down) and uploads it; the server serves the uploaded file, and Node loads it
// and gets the page's logits within 1e-4. Also: the bundle reaches no Node API (its build refuses
// one), the page passes axe-core and fits a narrow window, the upload endpoint refuses a file for
// another base and keeps nothing.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { AxeBuilder } from '@axe-core/playwright';
import type { BrowserContext, Page } from 'playwright-core';
import { launchChromium } from './chromium.js';
import { createAdapter, createServer, generateBatch, loadAdapter, loadModel, saveAdapter, type LlamaModel, type Server } from '../src/index.js';
import { maxAbsDiff, repoRoot, stories260K, tinystories656k } from './helpers.js';

const SHOTS = process.env.LLAMA_ADAPTER_SCREENSHOTS ?? path.join(repoRoot, 'test-output', 'ui');
// WebGPU in headless Chromium on a machine without a GPU: the SwiftShader Vulkan driver
const WEBGPU_FLAGS = ['--enable-unsafe-webgpu', '--enable-features=Vulkan', '--use-vulkan=swiftshader', '--use-webgpu-adapter=swiftshader'];

describe('the library in a page (headless Chromium, WebGPU on SwiftShader)', () => {
  let m: LlamaModel;
  let server: Server;
  let url: string;
  let dir: string;
  let ctx: BrowserContext;
  let page: Page;
  const consoleErrors: string[] = [];

  before(async () => {
    m = await loadModel(tinystories656k, { backend: 'ts' });
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'la-page-'));
    fs.mkdirSync(path.join(dir, 'adapters'));
    server = createServer(m, { modelPath: tinystories656k, adapterDir: path.join(dir, 'adapters'), dataDir: path.join(dir, 'data') });
    url = await server.listen('127.0.0.1', 0);
    ctx = await launchChromium(path.join(dir, 'profile'), WEBGPU_FLAGS);
    page = ctx.pages()[0] ?? (await ctx.newPage());
    page.on('console', (msg) => {
      if (msg.type() === 'error') consoleErrors.push(msg.text());
    });
    page.on('pageerror', (e) => consoleErrors.push(String(e)));
    await page.goto(`${url}/#/local`);
  });

  after(async () => {
    await ctx?.close();
    await server?.close();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  const status = () => page.locator('.status');
  const done = async (what: RegExp) => {
    await page.locator('.status [data-busy="false"]', { hasText: what }).or(page.locator('.status .error')).waitFor({ timeout: 120_000 });
    const err = await page.locator('.status .error').count();
    assert.equal(err, 0, `page error: ${err ? await page.locator('.status .error').textContent() : ''}`);
  };

  it('loads the server model onto WebGPU in the page and generates the greedy ids Node generates', async () => {
    await page.getByLabel('Backend').selectOption('webgpu');
    await page.getByRole('button', { name: 'Load the server’s model' }).click();
    await done(/loaded in this page/);
    assert.match((await status().textContent()) ?? '', /tinystories-656k loaded in this page, on webgpu/);
    const prompt = 'Once upon a time';
    await page.getByLabel('Prompt').fill(prompt);
    await page.getByLabel('Max tokens').fill('24');
    await page.getByRole('button', { name: 'Generate' }).click();
    await done(/tokens, greedy/);
    const ids = ((await page.locator('.local-output').getAttribute('data-ids')) ?? '').split(',').map(Number);
    const [want] = await generateBatch(m, [prompt], { temperature: 0, maxTokens: 24 });
    assert.deepEqual(ids, want.ids);
  });

  it('trains an adapter for 20 steps in the page (the loss goes down), uploads it, and Node gets the page logits within 1e-4', async () => {
    await page.getByLabel('Steps').fill('20');
    await page.getByRole('button', { name: 'Train' }).click();
    await done(/trained 20 steps/);
    const losses = ((await page.locator('.local-losses').getAttribute('data-losses')) ?? '').split(',').map(Number);
    assert.equal(losses.length, 20);
    const head = (losses[0] + losses[1] + losses[2]) / 3,
      tail = (losses[17] + losses[18] + losses[19]) / 3;
    assert.ok(tail < head, `loss ${head.toFixed(3)} -> ${tail.toFixed(3)}`);
    await page.getByLabel('Name on the server').fill('from-page');
    await page.getByRole('button', { name: 'Upload to the server' }).click();
    await done(/uploaded/);
    fs.mkdirSync(SHOTS, { recursive: true });
    await page.screenshot({ path: path.join(SHOTS, 'in-the-browser.png'), fullPage: true });
    // the server serves it, and Node reads the same file
    const list = (await (await fetch(`${url}/v1/models`)).json()) as { data: { id: string }[] };
    assert.ok(list.data.some((x) => x.id === 'from-page'));
    const onNode = loadAdapter(path.join(dir, 'adapters', 'from-page.safetensors'), m);
    const tokens = [m.tokenizer.encode('Write a story about Tom and a ball.', { bos: true })];
    const inPage = await page.evaluate(async (t) => {
      const p = window.llamaAdapterPage as unknown as { model: { forwardAsync: (t: number[][], o: object) => Promise<Float32Array> }; adapter: object };
      return Array.from(await p.model.forwardAsync(t, { adapter: p.adapter }));
    }, tokens);
    const d = maxAbsDiff(m.forward(tokens, { adapter: onNode }), inPage);
    assert.ok(d < 1e-4, `logits max |diff| ${d}`);
    assert.deepEqual(consoleErrors, []);
  });

  it('the page with everything shown: no serious or critical axe-core violations, no sideways scrolling in a narrow window', async () => {
    const r = await new AxeBuilder({ page }).analyze();
    const bad = r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
    assert.deepEqual(
      bad.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`),
      [],
    );
    await page.setViewportSize({ width: 400, height: 860 });
    const [scroll, client] = await page.evaluate(() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]);
    await page.setViewportSize({ width: 1280, height: 900 });
    assert.ok(scroll <= client, `the page is ${scroll}px wide in a ${client}px window`);
  });

  it('the upload endpoint refuses an adapter made for another base, and keeps nothing', async () => {
    const other = await loadModel(stories260K, { backend: 'ts' });
    const f = path.join(dir, 'other.safetensors');
    saveAdapter(createAdapter(other, { promptLength: 2, adapterLayers: 1 }), f);
    const r = await fetch(`${url}/v1/adapters/other/file`, {
      method: 'PUT',
      headers: { 'content-type': 'application/octet-stream' },
      body: fs.readFileSync(f),
    });
    assert.equal(r.status, 400);
    assert.match(((await r.json()) as { error: { message: string } }).error.message, /base|dim|model/i);
    assert.ok(!fs.existsSync(path.join(dir, 'adapters', 'other.safetensors')));
    const bad = await fetch(`${url}/v1/adapters/..%2Fx/file`, { method: 'PUT', headers: { 'content-type': 'application/octet-stream' }, body: 'x' });
    assert.ok(bad.status === 400 || bad.status === 404);
  });
});

declare global {
  interface Window {
    llamaAdapterPage?: unknown;
  }
}
