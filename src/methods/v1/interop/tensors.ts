// The neutral form every adapter file format is read into and written from: per adapted layer a
// prompt (K, D) and its gate parameters, the gate convention in force and how it was decided, and
// what the file tells about its base. toAdapter() checks it against a base model (what a
// third-party file cannot name, its base's identity, becomes a warning) and builds the Adapter;
// fromAdapter() is the reverse; gatesFor() converts gate parameters between conventions where
// that is exact and refuses, with the reason, where it is not.

import { check, LlamaAdapterError } from '../../../core/errors.js';
import type { MethodHost } from '../../../model/method.js';
import { Adapter } from '../adapter.js';
import { GATE_RULES, type GateMode } from '../gate.js';
import type { PromptProjection } from '../prompt-projection.js';

export type AdapterFormat = 'llama-adapter' | 'peft' | 'official' | 'litgpt';

export const ADAPTER_FORMATS: Record<AdapterFormat, string> = {
  'llama-adapter': 'this library (.safetensors naming its base)',
  peft: 'Hugging Face PEFT adaption_prompt (directory: adapter_config.json + adapter_model.safetensors or .bin)',
  official: 'official LLaMA-Adapter v1 (.pth: adapter_query.weight + layers.{i}.attention.gate)',
  litgpt: 'litgpt adapter (lit_model.pth.adapter: transformer.h.{i}.attn.adapter_wte / gating_factor)',
};

/** An adapter as read from a file, before it meets a base model. */
export interface AdapterTensors {
  format: AdapterFormat;
  path: string;
  promptLength: number; // K
  dim: number; // D of the base
  layers: number[]; // absolute indices of the adapted layers, ascending, contiguous, ending at the base's top layer
  baseLayers: number | null; // N, where the file says (else only "at least layers.at(-1) + 1")
  heads: number | null; // H, where the file says
  kvHeads: number | null; // Hkv, where the file says
  prompts: Float32Array[]; // per adapted layer (K, D)
  gates: Float32Array[]; // per adapted layer: (H) per head, or (1) for all heads
  gate: GateMode; // the convention the gate values are meant in
  gateChoice: 'file' | 'default' | 'option'; // who decided it: the file's own format, the documented default, or the caller
  promptProjection: PromptProjection;
  dtype: string; // of the stored tensors ('F32', 'BF16', ...)
  notes: string[]; // what a user should know about this file (warnings when loading)
  metadata: Record<string, string>; // the file's own metadata (this library's format), else {}
}

/** Number of parameters the file holds for the adapted layers. */
export function parameterCountOf(t: AdapterTensors): number {
  return t.prompts.reduce((s, p) => s + p.length, 0) + t.gates.reduce((s, g) => s + g.length, 0);
}

/** Check that a reader produced a consistent adapter (layers contiguous, shapes agree). */
export function checkTensors(t: AdapterTensors): AdapterTensors {
  const p = t.path;
  check(t.layers.length > 0, `${p}: the file adapts no layer`);
  check(t.layers.length === t.prompts.length && t.layers.length === t.gates.length, `${p}: prompts and gates are given for different layers`);
  t.layers.forEach((l, i) => {
    check(i === 0 || l === t.layers[i - 1] + 1, () => `${p}: adapted layers ${t.layers.join(', ')} are not contiguous (every format adapts the top L layers)`);
    check(
      t.prompts[i].length === t.promptLength * t.dim,
      () => `${p}: layer ${l}: prompt has ${t.prompts[i].length} values, expected K x D = ${t.promptLength} x ${t.dim}`,
    );
  });
  const g = t.gates[0].length;
  check(
    t.gates.every((x) => x.length === g),
    `${p}: layers have gates of different sizes`,
  );
  check(
    !GATE_RULES[t.gate].perHead ? g === 1 : t.heads === null || g === 1 || g === t.heads,
    `${p}: ${g} gate values per layer do not fit gate convention ${t.gate}`,
  );
  check(
    t.baseLayers === null || t.layers.at(-1) === t.baseLayers - 1,
    () => `${p}: adapted layers end at ${t.layers.at(-1)}, not at the top layer ${(t.baseLayers ?? 0) - 1}`,
  );
  return t;
}

/**
 * Gate parameters of every layer in convention `to` (one per head, or one per layer), from t's.
 * Exact only: per-head values become one per layer only where all heads of every layer are equal,
 * and tanh(g) becomes a raw gate as its float32 value (the effective gate the model applies), never
 * the other way (atanh would not give back the same float32 gates). Throws with the reason otherwise.
 */
export function gatesFor(t: AdapterTensors, to: GateMode, heads: number | null, target: string): Float32Array[] {
  const from = t.gate;
  if (from === to) return t.gates.map((g) => (GATE_RULES[to].perHead && g.length === 1 && heads ? new Float32Array(heads).fill(g[0]) : g.slice()));
  check(
    !(from !== 'tanh-per-head' && to === 'tanh-per-head'),
    `${t.path}: cannot express ${from} gates as tanh-per-head exactly (atanh of a float32 gate does not round-trip); ${target} keeps gates as ${from}`,
  );
  const eff = t.gates.map((g) => g.map((x) => GATE_RULES[from].apply(x))); // float32 effective gates (as the model applies them)
  if (to === 'raw-per-head') return eff.map((g) => (g.length === 1 && heads ? new Float32Array(heads).fill(g[0]) : g));
  // to raw-per-layer: one value per layer, so every head must agree
  return eff.map((g, i) => {
    const bad = g.findIndex((x) => x !== g[0]);
    if (bad >= 0) {
      throw new LlamaAdapterError(
        `${t.path}: layer ${t.layers[i]} has per-head gates that differ (head 0: ${g[0]}, head ${bad}: ${g[bad]}); ${target} has one scalar gate per layer, so this adapter cannot be written there exactly`,
      );
    }
    return g.subarray(0, 1).slice();
  });
}

export interface ToAdapterOptions {
  onWarning?: (message: string) => void;
}

/**
 * Build an Adapter on `host` from file tensors, refusing a base the file does not fit (its width,
 * layer count, head counts where the file says them), naming both shapes. The base's identity
 * itself cannot be checked for third-party files: that and the file's other notes are warnings.
 */
export function toAdapter(t: AdapterTensors, host: MethodHost, o: ToAdapterOptions = {}): Adapter {
  const c = host.config;
  const p = t.path;
  const top = t.layers.at(-1) as number;
  const fileBase = `adapter for a base with D=${t.dim}, ${t.baseLayers ?? `at least ${top + 1}`} layers${t.heads ? `, ${t.heads} heads` : ''}${t.kvHeads ? `, ${t.kvHeads} kv heads` : ''}`;
  const modelBase = `this model has D=${c.dim}, ${c.nLayers} layers, ${c.nHeads} heads, ${c.nKvHeads} kv heads`;
  const fits =
    t.dim === c.dim &&
    (t.baseLayers ?? top + 1) === c.nLayers &&
    top === c.nLayers - 1 &&
    (t.heads ?? c.nHeads) === c.nHeads &&
    (t.kvHeads ?? c.nKvHeads) === c.nKvHeads &&
    (t.gates[0].length === 1 || t.gates[0].length === c.nHeads);
  if (!fits) {
    const layersNote =
      top !== c.nLayers - 1 ? ` (it adapts layers ${t.layers[0]}..${top}; ${t.format} adapts the top layers, so its base has ${top + 1} layers)` : '';
    throw new LlamaAdapterError(`${p}: ${t.format} ${fileBase}, but ${modelBase}${layersNote}: it belongs to another base model`);
  }
  check(t.promptLength <= c.maxSeqLen, `${p}: prompt length ${t.promptLength} is longer than the model's context of ${c.maxSeqLen}`);
  const a = new Adapter(host, { promptLength: t.promptLength, adapterLayers: t.layers.length, gate: t.gate, promptProjection: t.promptProjection });
  const params = a.parameters();
  const gates = gatesFor(t, t.gate, c.nHeads, 'this adapter');
  t.layers.forEach((l, i) => {
    params.get(`layers.${l}.adaption_prompt`)!.set(t.prompts[i]);
    params.get(`layers.${l}.adaption_gate`)!.set(gates[i]);
  });
  a.invalidate();
  if (t.format !== 'llama-adapter') {
    const src = host.info?.sourceDtypes;
    const dtypeNote =
      t.format === 'peft' && src && !src.includes(t.dtype)
        ? `; PEFT stores adapters in its base's dtype, this file is ${t.dtype} and the model ${src.join('/')}`
        : '';
    const warn = o.onWarning ?? ((m: string) => process.emitWarning(m, 'LlamaAdapterWarning'));
    warn(
      `${p}: ${t.format === 'official' ? 'an' : 'a'} ${t.format} file does not name its base model; only its shape was checked (D=${c.dim}, ${c.nLayers} layers, ${c.nHeads} heads)${dtypeNote}`,
    );
    for (const n of t.notes) warn(`${p}: ${n}`);
    Object.assign(a.meta, provenance(t));
  }
  return a;
}

/** Where a converted adapter came from, as metadata fields of this library's file. */
export function provenance(t: AdapterTensors): Record<string, string> {
  return {
    source_format: t.format,
    source_file: t.path,
    source_dtype: t.dtype,
    source_gate: `${t.gate} (${t.gateChoice === 'file' ? `the ${t.format} convention` : t.gateChoice === 'default' ? 'the documented default for this file' : 'chosen when loading'})`,
  };
}

/** The tensors of a live adapter (to write it in another format). */
export function fromAdapter(a: Adapter, path: string): AdapterTensors {
  const c = a.host.config;
  const params = a.parameters();
  const layers = Array.from({ length: a.config.adapterLayers }, (_, i) => a.firstLayer + i);
  return {
    format: 'llama-adapter',
    path,
    promptLength: a.config.promptLength,
    dim: c.dim,
    layers,
    baseLayers: c.nLayers,
    heads: c.nHeads,
    kvHeads: c.nKvHeads,
    prompts: layers.map((l) => params.get(`layers.${l}.adaption_prompt`)!),
    gates: layers.map((l) => params.get(`layers.${l}.adaption_gate`)!),
    gate: a.config.gate,
    gateChoice: 'file',
    promptProjection: a.config.promptProjection ?? 'standard',
    dtype: 'F32',
    notes: [],
    metadata: { ...a.meta },
  };
}
