// The library in a web page (bundled by scripts/build-browser.mjs into dist/ui/lib/llama-adapter.js,
// an ES module the server serves beside the web UI). No Node API is reachable from here (the
// bundle build fails on any `node:` import): files arrive as bytes (fetch, File), safetensors are
// parsed from them, and the backend is WebGPU (navigator.gpu) or, without it, the TypeScript one.
//
//   const m = await fetchModel('/v1/model');            // the server's base model, file by file
//   const a = createAdapter(m, { promptLength: 10, adapterLayers: 2 });
//   const { losses } = await trainAdapter(m, a, records, { steps: 20 });
//   const bytes = adapterBytes(a);                       // the adapter file, to upload or download
//
// An adapter made here names its base by the same weight fingerprint as in Node, so the server
// (or `llama-adapter generate -a`) loads it onto the same model.

import type { Backend } from './backend/backend.js';
import { createTsBackend } from './backend/ts/index.js';
import { loadWebGpuBackend } from './backend/webgpu/index.js';
import { LlamaAdapterError } from './core/errors.js';
import type { WeightDtype } from './core/weights.js';
import { memoryDir, readHfDir } from './formats/hf-read.js';
import type { Adapter } from './methods/v1/adapter.js';
import { LlamaModel } from './model/model.js';
import { Rng } from './core/rng.js';
import { stripBom } from './core/text.js';
import { addSpecialNames, parseHfTokenizerJson, type HfSpecialNames } from './tokenizer/hf-json.js';
import { parseSentencePieceModel } from './tokenizer/sp-model.js';
import type { Tokenizer } from './tokenizer/tokenizer.js';
import { padBatch, tokenizeExample } from './train/data.js';
import { AdamW } from './train/optimizer.js';
import type { InstructionRecord, PromptStyleName } from './train/prompt-styles.js';
import { learningRate } from './train/schedule.js';
import { optimizerStep, stepBuffers } from './train/step.js';

export { createAdapter, Adapter } from './methods/v1/adapter.js';
export { adapterBytes, adapterFromBytes } from './methods/v1/adapter-format.js';
export { generate, generateBatch } from './generate/generate.js';
export { Engine } from './generate/engine.js';
export { LlamaModel } from './model/model.js';
export { parseInstructionData } from './train/data.js';
export { LlamaAdapterError } from './core/errors.js';

export interface OpenModelOptions {
  /** 'webgpu', 'ts', or 'auto' (default: WebGPU when the browser has an adapter, else TypeScript). */
  backend?: 'webgpu' | 'ts' | 'auto';
  /** Frozen matrices in f32 (default) or bf16 (half the memory; products as Backend.matmul says). */
  dtype?: Extract<WeightDtype, 'f32' | 'bf16'>;
  /** What errors call the model (default "model"). */
  name?: string;
}

/** The backend a page asked for: WebGPU on the browser's adapter (a software one too, when named), or the TypeScript oracle. */
async function pageBackend(name: OpenModelOptions['backend'] = 'auto'): Promise<Backend> {
  if (name === 'ts') return createTsBackend();
  const r = await loadWebGpuBackend(name === 'webgpu');
  if (r.backend) return r.backend;
  if (name === 'webgpu') throw new LlamaAdapterError(`webgpu backend unavailable: ${r.error}`);
  return createTsBackend();
}

/**
 * A Hugging Face Llama model from its files' bytes: config.json, model.safetensors (or shards and
 * model.safetensors.index.json) and tokenizer.json (with tokenizer_config.json) or tokenizer.model.
 */
export async function openModel(files: Readonly<Record<string, Uint8Array>>, o: OpenModelOptions = {}): Promise<LlamaModel> {
  const name = o.name ?? 'model';
  const dtype = o.dtype ?? 'f32';
  const dir = memoryDir(name, files);
  const mf = readHfDir(dir, { dtype });
  const tokenizer = pageTokenizer(files, name);
  if (tokenizer.vocabSize !== mf.config.vocabSize) {
    throw new LlamaAdapterError(`${name}: tokenizer has ${tokenizer.vocabSize} tokens but the model has a vocabulary of ${mf.config.vocabSize}`);
  }
  const backend = await pageBackend(o.backend);
  return new LlamaModel(mf.config, mf.weights, tokenizer, backend, mf.fingerprint, { path: name, format: mf.format, sourceDtypes: mf.sourceDtypes, dtype });
}

function pageTokenizer(files: Readonly<Record<string, Uint8Array>>, name: string): Tokenizer {
  const text = (f: string): string => stripBom(new TextDecoder().decode(files[f]));
  if (files['tokenizer.json']) {
    const names: HfSpecialNames = {};
    for (const f of ['tokenizer_config.json', 'special_tokens_map.json']) {
      if (!files[f]) continue;
      try {
        addSpecialNames(names, JSON.parse(text(f)));
      } catch (e) {
        throw new LlamaAdapterError(`${name}/${f}: invalid JSON (${(e as Error).message})`, { cause: e });
      }
    }
    return parseHfTokenizerJson(text('tokenizer.json'), `${name}/tokenizer.json`, names);
  }
  if (files['tokenizer.model']) return parseSentencePieceModel(files['tokenizer.model'], `${name}/tokenizer.model`);
  throw new LlamaAdapterError(`${name}: no tokenizer.json or tokenizer.model among its files`);
}

/**
 * The model a server offers at `url` (GET url/files lists its files, GET url/files/NAME gives one:
 * `llama-adapter serve` answers at /v1/model), fetched whole.
 */
export async function fetchModel(url: string, o: OpenModelOptions = {}): Promise<LlamaModel> {
  const get = async (path: string): Promise<Response> => {
    const r = await fetch(path);
    if (!r.ok) throw new LlamaAdapterError(`${path}: HTTP ${r.status} ${await r.text()}`);
    return r;
  };
  const list = (await (await get(`${url}/files`)).json()) as { name: string; files: string[] };
  const files: Record<string, Uint8Array> = {};
  for (const f of list.files) files[f] = new Uint8Array(await (await get(`${url}/files/${encodeURIComponent(f)}`)).arrayBuffer());
  return openModel(files, { name: list.name, ...o });
}

export interface TrainOptions {
  steps: number; // optimizer steps
  batchSize?: number; // rows per step (default 4)
  lr?: number; // peak learning rate (default 0.01), constant after `warmupSteps`
  warmupSteps?: number; // linear warmup (default 0)
  weightDecay?: number; // on prompts (default 0.02)
  clipGrad?: number; // global-norm clipping (default off)
  promptStyle?: PromptStyleName; // default 'plain'
  maxSeqLen?: number; // default 256
  seed?: number; // data order (default 0)
  /** After each step (1-based). Return false to stop. */
  onStep?: (step: number, loss: number) => boolean | undefined;
}

/**
 * Train `adapter` in the page: `steps` AdamW steps (betas 0.9/0.95 as finetune()) over the records,
 * shuffled by `seed`, with the same optimizer step finetune() takes (train/step.ts). Resolves to
 * the per-step losses. The parameters are on the host after each step (adapterBytes reads them).
 */
export async function trainAdapter(model: LlamaModel, adapter: Adapter, records: readonly InstructionRecord[], o: TrainOptions): Promise<{ losses: number[] }> {
  if (records.length === 0) throw new LlamaAdapterError('trainAdapter: no training records');
  const tok = model.tokenizer;
  const ex = records.map((r) => tokenizeExample(tok, r, o.promptStyle ?? 'plain', Math.min(o.maxSeqLen ?? 256, model.config.maxSeqLen)));
  const bs = Math.min(o.batchSize ?? 4, ex.length);
  const shapes = new Map([...adapter.parameters().keys()].map((k) => [k, adapter.shapeOf(k)]));
  const opt = new AdamW(adapter.parameters(), shapes, { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: o.weightDecay ?? 0.02 });
  const sched = { peakLr: o.lr ?? 0.01, minLr: o.lr ?? 0.01, totalSteps: o.steps, warmupSteps: o.warmupSteps ?? 0 };
  const bufs = stepBuffers(adapter);
  const rng = new Rng(o.seed ?? 0);
  let order: number[] = [];
  const losses: number[] = [];
  for (let step = 0; step < o.steps; step++) {
    if (order.length < bs) order = [...order, ...rng.shuffle(ex.map((_, i) => i))];
    const batch = padBatch(
      order.splice(0, bs).map((i) => ex[i]),
      tok.eosId,
    );
    const { loss } = await optimizerStep(model, adapter, opt, [batch], learningRate(sched, step), o.clipGrad, bufs, (l, n) => {
      throw new LlamaAdapterError(`training diverged at step ${step + 1} (loss ${l}, gradient norm ${n}); try a lower learning rate`);
    });
    losses.push(loss);
    if (o.onStep?.(step + 1, loss) === false) break;
  }
  return { losses };
}
