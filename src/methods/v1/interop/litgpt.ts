// litgpt adapters (`litgpt finetune_adapter`): `lit_model.pth.adapter`, a torch.save of
// {"model": {...}} with, for each layer i from adapter_start_layer up, `transformer.h.{i}.attn.
// adapter_wte.weight` (K, D) and `transformer.h.{i}.attn.gating_factor` (1, 1, H, 1) (older files:
// (1, H, 1, 1)), applied raw per head: this library's `raw-per-head`. model_config.yaml beside the
// file, when present, gives n_layer, n_embd, n_head, n_query_groups, adapter_start_layer and
// adapter_prompt_length, which are checked against the tensors and the base.
// litgpt since Dec 2024 (PR #1013) computes the prompt keys/values from the wrong rows of its
// fused qkv (prompt-projection.ts); `promptProjection: 'litgpt-split'` reproduces that for files
// it trained, the default computes the method as the paper, PEFT and official code do.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { check, LlamaAdapterError } from '../../../core/errors.js';
import type { GateMode } from '../gate.js';
import type { PromptProjection } from '../prompt-projection.js';
import { checkShape, dtypeOf, type TensorSource } from './source.js';
import { checkTensors, type AdapterTensors } from './tensors.js';

const KEY = /^transformer\.h\.(\d+)\.attn\.(adapter_wte\.weight|gating_factor)$/;
const V2 = /adapter_bias|adapter_scale|norm_1|norm_2|ln_f/;

export function isLitgpt(src: TensorSource): boolean {
  return src.names().some((n) => KEY.test(n));
}

/** model_config.yaml beside the adapter, if there is one: its integer fields. */
function modelConfig(file: string): { file: string; get(key: string): number | undefined } | null {
  const f = path.join(path.dirname(file), 'model_config.yaml');
  if (!fs.existsSync(f)) return null;
  let y: unknown;
  try {
    y = parseYaml(fs.readFileSync(f, 'utf8'), { maxAliasCount: 100 });
  } catch (e) {
    throw new LlamaAdapterError(`${f}: not valid YAML (${(e as Error).message})`, { cause: e });
  }
  check(typeof y === 'object' && y !== null && !Array.isArray(y), `${f}: not a YAML mapping`);
  const m = y as Record<string, unknown>;
  return {
    file: f,
    get(key) {
      const v = m[key];
      if (v === undefined || v === null) return undefined;
      check(Number.isSafeInteger(v) && (v as number) >= 0, `${f}: "${key}" is ${JSON.stringify(v)}, expected a non-negative integer`);
      return v as number;
    },
  };
}

export function readLitgpt(src: TensorSource, o: { gate?: GateMode; promptProjection?: PromptProjection }): AdapterTensors {
  const p = src.path;
  const byLayer = new Map<number, { wte?: string; gate?: string }>();
  for (const n of src.names()) {
    const m = KEY.exec(n);
    if (!m) {
      if (V2.test(n)) throw new LlamaAdapterError(`${p}: a litgpt adapter_v2 file (tensor "${n}"): only litgpt adapter (v1) files are supported`);
      throw new LlamaAdapterError(`${p}: unexpected tensor "${n}" in a litgpt adapter file`);
    }
    check(m[1].length <= 6, `${p}: layer index in "${n}" is out of range`);
    const e = byLayer.get(Number(m[1])) ?? {};
    if (m[2] === 'gating_factor') e.gate = n;
    else e.wte = n;
    byLayer.set(Number(m[1]), e);
  }
  check(
    o.gate === undefined || o.gate === 'raw-per-head',
    `${p}: litgpt gates are raw per head (raw-per-head); gate ${o.gate} cannot be chosen for a litgpt file`,
  );
  const layers = [...byLayer.keys()].sort((a, b) => a - b);
  check(layers.length > 0, `${p}: no adapter tensors`);
  const firstWte = byLayer.get(layers[0])?.wte;
  check(firstWte, `${p}: layer ${layers[0]} has no adapter_wte.weight`);
  const [K, D] = src.shape(firstWte!);
  const gShape = src.shape(byLayer.get(layers[0])?.gate ?? firstWte!);
  check(
    gShape.length === 4 && gShape[0] === 1 && gShape[3] === 1 && (gShape[1] === 1 || gShape[2] === 1),
    `${p}: gating_factor of layer ${layers[0]} has shape [${gShape}], expected (1, 1, H, 1) or (1, H, 1, 1)`,
  );
  const H = gShape[1] === 1 ? gShape[2] : gShape[1];
  const prompts: Float32Array[] = [];
  const gates: Float32Array[] = [];
  const names: string[] = [];
  for (const l of layers) {
    const e = byLayer.get(l)!;
    check(e.wte && e.gate, `${p}: layer ${l} has ${e.wte ? 'no gating_factor' : 'no adapter_wte.weight'}`);
    checkShape(src, e.wte!, [K, D]);
    const g = src.shape(e.gate!);
    check(
      g.length === 4 && g.reduce((a, b) => a * b, 1) === H && g[0] === 1 && g[3] === 1,
      `${p}: tensor "${e.gate}" has shape [${g}], expected (1, 1, ${H}, 1)`,
    );
    prompts.push(src.f32(e.wte!));
    gates.push(src.f32(e.gate!)); // (1, 1, H, 1) and (1, H, 1, 1) hold the same H values in order
    names.push(e.wte!, e.gate!);
  }
  const cfg = modelConfig(p);
  const expect = (key: string, got: number, what: string): void => {
    const v = cfg?.get(key);
    check(v === undefined || v === got, () => `${cfg?.file}: ${key} is ${v}, but the adapter's tensors have ${what} ${got}`);
  };
  expect('adapter_start_layer', layers[0], 'their first adapted layer');
  expect('adapter_prompt_length', K, 'prompt length');
  expect('n_embd', D, 'width');
  expect('n_head', H, 'heads');
  const nLayer = cfg?.get('n_layer');
  const projection = o.promptProjection ?? 'standard';
  const notes: string[] = [];
  if (projection === 'standard') {
    notes.push(
      "litgpt since Dec 2024 (PR #1013) computes adapter prompt keys/values from the wrong rows of its fused qkv; if this file was trained by such a litgpt, pass --litgpt-kv-split (promptProjection: 'litgpt-split') to reproduce its outputs",
    );
  }
  return checkTensors({
    format: 'litgpt',
    path: p,
    promptLength: K,
    dim: D,
    layers,
    baseLayers: nLayer ?? null,
    heads: H,
    kvHeads: cfg?.get('n_query_groups') ?? null,
    prompts,
    gates,
    gate: 'raw-per-head',
    gateChoice: 'file',
    promptProjection: projection,
    dtype: dtypeOf(src, names),
    notes,
    metadata: {},
  });
}
