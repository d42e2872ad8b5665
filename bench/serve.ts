// The serve benchmark (`npm run bench -- --serve --config C`): an in-process server over the
// bench model, driven over HTTP on 127.0.0.1 by a separate client process, in four scenarios of
// the same run: one stream alone; C concurrent streams over one adapter; C streams over M
// different adapters; and those C streams against a sequential server (one request at a time,
// how the official demos and a LoRA-mismatched llama.cpp server behave). One JSON line per
// scenario (aggregate generated tokens/s, TTFT and inter-token latency p50/p99, errors), then the
// ratios.

import type { BenchDtype } from './run.js';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BackendName } from '../src/backend/index.js';
import { createAdapter } from '../src/methods/v1/adapter.js';
import { saveAdapter } from '../src/methods/v1/file.js';
import { LlamaModel } from '../src/model/model.js';
import { createServer } from '../src/serve/server.js';
import { nativeInfo } from '../src/backend/native.js';
import { IdTextTokenizer } from './id-tokenizer.js';
import { buildModel, resolveConfig } from './configs.js';
import { trainBatch } from './measure.js';
import { type BenchLine, round } from './run.js';
import type { ClientPlan, ClientResult } from './serve-client.js';

export interface ServeBenchOptions {
  config: string;
  backend: BackendName;
  threads?: number;
  dtype: BenchDtype;
  clients: number; // concurrent streams
  adapters: number; // distinct adapters the streams are spread over
  requests: number; // requests per client, one after another
  tokens: number; // generated tokens per request
  promptTokens: number;
}

const quantile = (xs: number[], q: number): number => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};

export async function runServeBench(o: ServeBenchOptions, emit: (l: BenchLine) => void): Promise<void> {
  const built = (await buildModel(resolveConfig(o.config), o.dtype === 'fp32' ? 'f32' : o.dtype, o.backend, o.threads)).model;
  const bc = built.config;
  const model = new LlamaModel(bc, built.weights, new IdTextTokenizer(bc.vocabSize, bc.bosId, bc.eosId), built.backend, built.fingerprint, built.info);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'la-bench-serve-'));
  const c = model.config;
  const L = Math.max(1, c.nLayers - 2);
  const names = Array.from({ length: o.adapters }, (_, i) => `a${i}`);
  names.forEach((n, i) =>
    saveAdapter(createAdapter(model, { promptLength: 10, adapterLayers: L, gateInit: 'random', seed: i + 1 }), path.join(dir, `${n}.safetensors`)),
  );
  const adapters = names.map((n) => ({ name: n, file: path.join(dir, `${n}.safetensors`) }));
  const prompt = trainBatch(c.vocabSize, 1, o.promptTokens, 5).tokens[0];
  prompt[0] = c.bosId;
  const client = path.join(path.dirname(fileURLToPath(import.meta.url)), 'serve-client.js');
  const base = {
    config: o.config,
    backend: model.backend.name,
    simd: model.backend.name === 'native' ? (nativeInfo()?.simd ?? null) : null,
    threads: model.backend.threads,
    dtype: o.dtype,
    tokens: o.tokens,
    prompt_tokens: o.promptTokens,
  };

  const scenario = async (name: string, maxBatch: number, clients: number, models: string[], requests = o.requests) => {
    const server = createServer(model, { modelPath: o.config, modelName: 'base', adapters, maxBatch, maxQueue: 1024, maxTokens: o.tokens });
    const url = await server.listen('127.0.0.1', 0);
    // warm-up: the same load, shorter (JIT, first touches, the thread pool's first wake-ups)
    const r = await spawnClient(client, { url, clients, requests: 1, models, prompt, maxTokens: Math.min(16, o.tokens) });
    if (r.errors) throw new Error(`serve bench: warm-up had ${r.errors} errors`);
    const res = await spawnClient(client, { url, clients, requests, models, prompt, maxTokens: o.tokens });
    await server.close(1000);
    const line: BenchLine = {
      ...base,
      kind: 'serve',
      scenario: name,
      max_batch: maxBatch,
      clients,
      adapters: new Set(models).size,
      tok_per_s: round(res.tokens / res.seconds),
      ttft_ms_p50: round(quantile(res.ttft, 0.5)),
      ttft_ms_p99: round(quantile(res.ttft, 0.99)),
      itl_ms_p50: round(quantile(res.itl, 0.5)),
      itl_ms_p99: round(quantile(res.itl, 0.99)),
      generated: res.tokens,
      errors: res.errors,
    };
    emit(line);
    return line.tok_per_s as number;
  };

  const alone = await scenario('one stream', o.clients, 1, [names[0]], o.requests * 4);
  const oneAdapter = await scenario(`${o.clients} streams, 1 adapter`, o.clients, o.clients, [names[0]]);
  const many = await scenario(`${o.clients} streams, ${o.adapters} adapters`, o.clients, o.clients, names);
  const seq = await scenario(`${o.clients} streams, ${o.adapters} adapters, sequential server`, 1, o.clients, names);
  emit({
    ...base,
    kind: 'serve-ratios',
    concurrent_over_alone: round(many / alone),
    one_adapter_concurrent_over_alone: round(oneAdapter / alone),
    many_adapters_over_one: round(many / oneAdapter),
    over_sequential: round(many / seq),
  });
  fs.rmSync(dir, { recursive: true, force: true });
}

/** Run the client process (asynchronously: the server in this process keeps stepping meanwhile). */
function spawnClient(script: string, plan: ClientPlan): Promise<ClientResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, JSON.stringify(plan)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code !== 0) reject(new Error(`serve bench: the client exited with ${code}`));
      else resolve(JSON.parse(out) as ClientResult);
    });
  });
}
