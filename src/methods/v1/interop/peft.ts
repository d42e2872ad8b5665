// Hugging Face PEFT `adaption_prompt` adapters: a directory with adapter_config.json
// (peft_type "ADAPTION_PROMPT", adapter_len = K, adapter_layers = L counted from the top; other keys
// ignored, as PEFT ignores them) and adapter_model.safetensors (or the legacy torch-pickled
// adapter_model.bin) holding, per adapted layer i, `base_model.model.model.layers.{i}.self_attn.
// adaption_prompt` (1, K, D) and `...adaption_gate` (1,) in the base model's dtype. PEFT applies
// the gate as a raw scalar per layer: this library's `raw-per-layer`. The writer produces what
// PeftModel.save_pretrained writes (sorted, indented config; safetensors with {"format": "pt"}).

import * as fs from 'node:fs';
import * as path from 'node:path';
import { check, LlamaAdapterError } from '../../../core/errors.js';
import { mkdirs, writeFileAtomic } from '../../../core/fs.js';
import { readTorchFile } from '../../../core/pth.js';
import { readSafetensors, writeSafetensors } from '../../../core/safetensors.js';
import type { GateMode } from '../gate.js';
import { checkShape, dtypeOf, safetensorsSource, torchSource, type TensorSource } from './source.js';
import { checkTensors, gatesFor, type AdapterTensors } from './tensors.js';

export const PEFT_CONFIG = 'adapter_config.json';
const PEFT_SAFETENSORS = 'adapter_model.safetensors';
const PEFT_BIN = 'adapter_model.bin';
const KEY = /^(?:base_model\.model\.)?model\.layers\.(\d+)\.self_attn\.adaption_(prompt|gate)$/;

function readConfig(file: string): Record<string, unknown> {
  let j: unknown;
  try {
    j = JSON.parse(fs.readFileSync(file, 'utf8').replace(/^\uFEFF/, ''));
  } catch (e) {
    throw new LlamaAdapterError(`${file}: not valid JSON (${(e as Error).message})`, { cause: e });
  }
  check(typeof j === 'object' && j !== null && !Array.isArray(j), `${file}: not a JSON object`);
  return j as Record<string, unknown>;
}

function intField(file: string, cfg: Record<string, unknown>, key: string): number {
  const v = cfg[key];
  check(
    Number.isSafeInteger(v) && (v as number) >= 1 && (v as number) <= 1 << 20,
    `${file}: "${key}" is ${JSON.stringify(v ?? null)}, expected a positive integer`,
  );
  return v as number;
}

/** Read a PEFT adaption_prompt directory. */
export function readPeft(dir: string, o: { gate?: GateMode }): AdapterTensors {
  const cfgFile = path.join(dir, PEFT_CONFIG);
  const cfg = readConfig(cfgFile);
  check(
    cfg.peft_type === 'ADAPTION_PROMPT',
    `${cfgFile}: peft_type is ${JSON.stringify(cfg.peft_type ?? null)}; only ADAPTION_PROMPT (LLaMA-Adapter) adapters are read here`,
  );
  const K = intField(cfgFile, cfg, 'adapter_len');
  const L = intField(cfgFile, cfg, 'adapter_layers');
  check(
    o.gate === undefined || o.gate === 'raw-per-layer',
    `${dir}: PEFT gates are one raw scalar per layer (raw-per-layer); gate ${o.gate} cannot be chosen for a PEFT file`,
  );
  const st = path.join(dir, PEFT_SAFETENSORS);
  const bin = path.join(dir, PEFT_BIN);
  let src: TensorSource;
  if (fs.existsSync(st)) src = safetensorsSource(readSafetensors(st));
  else if (fs.existsSync(bin)) src = torchSource(readTorchFile(bin));
  else throw new LlamaAdapterError(`${dir}: PEFT adapter directory has neither ${PEFT_SAFETENSORS} nor ${PEFT_BIN}`);
  const byLayer = new Map<number, { prompt?: string; gate?: string }>();
  for (const n of src.names()) {
    const m = KEY.exec(n);
    if (!m) {
      const why = /transformer\.h\.\d+\.attn\.adaption_/.test(n) ? ' (a GPT-2 adapter: only Llama/Mistral adapters are read)' : '';
      throw new LlamaAdapterError(`${src.path}: unexpected tensor "${n}" in a PEFT adaption_prompt file${why}`);
    }
    const l = Number(m[1]);
    check(l < 1 << 20, `${src.path}: layer index ${m[1]} in "${n}" is out of range`);
    const e = byLayer.get(l) ?? {};
    e[m[2] as 'prompt' | 'gate'] = n;
    byLayer.set(l, e);
  }
  const layers = [...byLayer.keys()].sort((a, b) => a - b);
  check(layers.length === L, `${src.path}: holds ${layers.length} adapted layers, ${PEFT_CONFIG} says adapter_layers = ${L}`);
  const first = byLayer.get(layers[0])?.prompt;
  check(first, `${src.path}: layer ${layers[0]} has no adaption_prompt`);
  const D = src.shape(first as string).at(-1) ?? 0;
  const prompts: Float32Array[] = [];
  const gates: Float32Array[] = [];
  const names: string[] = [];
  for (const l of layers) {
    const e = byLayer.get(l)!;
    check(e.prompt && e.gate, `${src.path}: layer ${l} has ${e.prompt ? 'no adaption_gate' : 'no adaption_prompt'}`);
    checkShape(src, e.prompt!, [1, K, D]);
    checkShape(src, e.gate!, [1]);
    prompts.push(src.f32(e.prompt!));
    gates.push(src.f32(e.gate!));
    names.push(e.prompt!, e.gate!);
  }
  return checkTensors({
    format: 'peft',
    path: dir,
    promptLength: K,
    dim: D,
    layers,
    baseLayers: null,
    heads: null,
    kvHeads: null,
    prompts,
    gates,
    gate: 'raw-per-layer',
    gateChoice: 'file',
    promptProjection: 'standard',
    dtype: dtypeOf(src, names),
    notes: [],
    metadata: {},
  });
}

/** Write `t` as a PEFT adaption_prompt directory (F32). Returns notes on what was converted. */
export function writePeft(t: AdapterTensors, dir: string, o: { baseModel?: string | null } = {}): string[] {
  check(t.promptProjection === 'standard', `${t.path}: emulates litgpt's prompt K/V split, which PEFT does not do: its PEFT file would compute other outputs`);
  const gates = gatesFor(t, 'raw-per-layer', null, 'PEFT');
  mkdirs(dir);
  const tensors = t.layers.flatMap((l, i) => [
    { name: `base_model.model.model.layers.${l}.self_attn.adaption_prompt`, dtype: 'F32' as const, shape: [1, t.promptLength, t.dim], data: t.prompts[i] },
    { name: `base_model.model.model.layers.${l}.self_attn.adaption_gate`, dtype: 'F32' as const, shape: [1], data: gates[i] },
  ]);
  writeSafetensors(path.join(dir, PEFT_SAFETENSORS), tensors, { format: 'pt' });
  // PeftConfigMixin.save_pretrained: json.dumps(asdict(config), indent=2, sort_keys=True), inference_mode set while saving
  const config: Record<string, unknown> = {
    adapter_layers: t.layers.length,
    adapter_len: t.promptLength,
    auto_mapping: null,
    base_model_name_or_path: o.baseModel ?? null,
    inference_mode: true,
    peft_type: 'ADAPTION_PROMPT',
    revision: null,
    target_modules: 'self_attn',
    task_type: 'CAUSAL_LM',
  };
  writeFileAtomic(path.join(dir, PEFT_CONFIG), JSON.stringify(config, null, 2));
  return t.gate === 'raw-per-layer' ? [] : [`gates converted from ${t.gate} to one raw scalar per layer (the same effective gates)`];
}
