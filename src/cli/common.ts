// Shared CLI plumbing: model-loading flags, number parsing with clear errors, error reporting.

import { type Command, InvalidArgumentError, Option } from 'commander';
import { LlamaAdapterError } from '../core/errors.js';
import { canQuantize, QUANT_DTYPES } from '../core/quant.js';
import type { WeightDtype } from '../core/weights.js';
import { loadModel } from '../model/load.js';
import type { LlamaModel } from '../model/model.js';
import { backendNames, type BackendName } from '../backend/index.js';
import { GATE_RULES, type GateMode } from '../methods/v1/gate.js';
import { loadAdapter, type LoadAdapterOptions } from '../methods/v1/interop/registry.js';
import type { Adapter } from '../methods/v1/adapter.js';
import type { MultimodalAdapter } from '../methods/v1/multimodal.js';
import { isMultimodalAdapterFile, loadMultimodalAdapter } from '../methods/v1/multimodal-file.js';
import type { ImageEncoder } from '../vision/image-encoder.js';

export function int(name: string, min = 0): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer >= ${min} (got "${v}")`);
    return n;
  };
}

export function num(name: string, min = -Infinity): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min) throw new InvalidArgumentError(`${name} must be a number >= ${min} (got "${v}")`);
    return n;
  };
}

/** A number in (lo, hi] (or [lo, hi] with `closedLo`): refused, not clamped, outside. */
export function inRange(name: string, lo: number, hi: number, closedLo = false): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!(v.trim() !== '' && Number.isFinite(n) && (closedLo ? n >= lo : n > lo) && n <= hi)) {
      throw new InvalidArgumentError(`${name} must be a number in ${closedLo ? '[' : '('}${lo}, ${hi}] (got "${v}")`);
    }
    return n;
  };
}

export interface ModelFlags {
  model: string;
  tokenizer?: string;
  backend?: BackendName;
  threads?: number;
  dtype: WeightDtype;
  checkTensors?: boolean;
}

/** Add --model/--tokenizer/--backend/--threads/--dtype to a command. */
export function modelOptions(cmd: Command, required = true): Command {
  if (required) cmd.requiredOption('-m, --model <path>', 'checkpoint: HF directory, GGUF file, llama2.c .bin (fp32 or int8)');
  else cmd.option('-m, --model <path>', 'checkpoint: HF directory, GGUF file, llama2.c .bin (fp32 or int8)');
  return cmd
    .option('--tokenizer <path>', 'tokenizer.json, tokenizer.model or tokenizer.bin (default: found beside the model)')
    .addOption(
      new Option(
        '--backend <name>',
        'compute backend (default: env LLAMA_ADAPTER_BACKEND, else auto: webgpu on a GPU, else native if built, else ts; webgpu by name also takes SwiftShader, a CPU emulation)',
      ).choices([...backendNames]),
    )
    .option('--threads <n>', 'native backend threads (default: all cores; env LLAMA_ADAPTER_THREADS)', int('--threads', 1))
    .addOption(
      new Option('--dtype <dtype>', 'in-memory dtype of the frozen weights (a quantized type quantizes at load; a GGUF keeps its quantized tensors)')
        .choices(['f32', 'bf16', 'f16', ...QUANT_DTYPES.filter(canQuantize)])
        .default('f32'),
    )
    .option('--check-tensors', 'refuse base weights holding NaN/Inf, naming the tensor (one pass over the weights)');
}

export function openModel(f: ModelFlags): Promise<LlamaModel> {
  return loadModel(f.model, { tokenizer: f.tokenizer, backend: f.backend, threads: f.threads, dtype: f.dtype, checkTensors: f.checkTensors });
}

export interface AdapterFlags {
  adapterGate?: GateMode;
  adapterPromptLength?: number;
  litgptKvSplit?: boolean;
}

/** Add the flags that say how a third-party adapter file is read (official gates and K, litgpt's K/V split). */
export function adapterOptions(cmd: Command): Command {
  return cmd
    .addOption(
      new Option(
        '--adapter-gate <convention>',
        'official .pth files: the gate convention they were trained with (default: tanh-per-head for (1, H, 1, 1) gates, as the official training code; raw-per-layer for (1,) gates)',
      ).choices(Object.keys(GATE_RULES)),
    )
    .option('--adapter-prompt-length <K>', 'official .pth files: prompt length K (not stored in the file; default 10)', int('--adapter-prompt-length', 1))
    .option('--litgpt-kv-split', "litgpt files: reproduce litgpt's prompt K/V mis-split (files trained by litgpt since Dec 2024, PR #1013)");
}

/** LoadAdapterOptions from the adapter flags; warnings go to stderr as one line each. */
export function adapterLoadOptions(f: AdapterFlags): LoadAdapterOptions {
  return {
    gate: f.adapterGate,
    promptLength: f.adapterPromptLength,
    promptProjection: f.litgptKvSplit ? 'litgpt-split' : undefined,
    onWarning: (m) => process.stderr.write(`llama-adapter: warning: ${m}\n`),
  };
}

export interface ImageFlags {
  imageEncoder?: string;
  featureLayers?: number[];
}

/** Add --image-encoder / --feature-layers (multimodal adapters). */
export function imageOptions(cmd: Command): Command {
  return cmd
    .option(
      '--image-encoder <path>',
      'image encoder for multimodal adapters: an HF CLIP directory, a TF.js model.json, or nsfwjs:mobilenet_v2 (default: the one a multimodal adapter file records)',
    )
    .option('--feature-layers <list>', 'encoder layers whose global features are concatenated (CLIP: 1-based, default N/3,2N/3,N)', (v: string) =>
      v.split(',').map((x) => {
        const n = Number(x);
        if (!Number.isInteger(n) || n < 0) throw new LlamaAdapterError(`--feature-layers: "${x}" is not a layer number`);
        return n;
      }),
    );
}

/** An adapter of any readable format, or a multimodal adapter with its image encoder. */
export async function openAnyAdapter(
  file: string,
  model: LlamaModel,
  f: AdapterFlags & ImageFlags & { force?: boolean },
): Promise<{ adapter: Adapter | MultimodalAdapter; encoder: ImageEncoder | null }> {
  if (isMultimodalAdapterFile(file)) return loadMultimodalAdapter(file, model, { force: f.force, encoderPath: f.imageEncoder, layers: f.featureLayers });
  return { adapter: loadAdapter(file, model, { ...adapterLoadOptions(f), force: f.force }), encoder: null };
}

/** Print a user error as one line (stack only with --verbose) and exit non-zero. */
export function reportError(e: unknown, verbose: boolean): never {
  if (verbose && e instanceof Error) process.stderr.write(`${e.stack}\n`);
  else if (e instanceof LlamaAdapterError) process.stderr.write(`llama-adapter: ${e.message}\n`);
  else process.stderr.write(`llama-adapter: internal error: ${e instanceof Error ? e.message : String(e)} (run with --verbose for details)\n`);
  process.exit(1);
}
