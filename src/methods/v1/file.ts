// The adapter file: a self-describing .safetensors with tensors `layers.{i}.adaption_prompt`
// (K, dim) and `layers.{i}.adaption_gate` (nHeads, or 1 for raw-per-layer), and __metadata__
// naming the format, gate convention, prompt length, the base model's architecture and weight
// fingerprint, and the training arguments. Loading onto a different base fails clearly.

import { check, LlamaAdapterError } from '../../core/errors.js';
import { readSafetensors, writeSafetensors } from '../../core/safetensors.js';
import { trainableTensors, type MethodHost } from '../../model/method.js';
import { Adapter } from './adapter.js';
import { isGateMode, GATE_RULES } from './gate.js';

export const ADAPTER_FORMAT = 'llama-adapter';
export const ADAPTER_VERSION = '1';

/** Architecture fields an adapter must agree with (the metadata key and the config field). */
const ARCH_FIELDS = [
  ['base_dim', 'dim'],
  ['base_layers', 'nLayers'],
  ['base_heads', 'nHeads'],
  ['base_kv_heads', 'nKvHeads'],
  ['base_vocab', 'vocabSize'],
] as const;

export interface AdapterFileInfo {
  metadata: Record<string, string>;
  tensors: { name: string; shape: number[] }[];
}

export function adapterMetadata(a: Adapter): Record<string, string> {
  const c = a.host.config;
  const m: Record<string, string> = {
    format: ADAPTER_FORMAT,
    version: ADAPTER_VERSION,
    gate: a.config.gate,
    prompt_length: String(a.config.promptLength),
    adapter_layers: String(a.config.adapterLayers),
    first_layer: String(a.firstLayer),
    base_fingerprint: a.host.fingerprint,
  };
  for (const [key, field] of ARCH_FIELDS) m[key] = String(c[field]);
  for (const [k, v] of Object.entries(a.meta)) if (!(k in m)) m[k] = v;
  return m;
}

/** Write the adapter atomically (temp file + rename): the tensors its one filter selects (trainableTensors). */
export function saveAdapter(a: Adapter, path: string): void {
  const tensors = [...trainableTensors(a)].map(([name, data]) => ({
    name,
    dtype: 'F32' as const,
    shape: a.shapeOf(name),
    data,
  }));
  writeSafetensors(path, tensors, adapterMetadata(a));
}

/** Header-level view of an adapter file (for `inspect`). */
export function readAdapterInfo(path: string): AdapterFileInfo {
  const f = readSafetensors(path);
  return { metadata: f.metadata, tensors: f.names().map((n) => ({ name: n, shape: f.info(n).shape })) };
}

export interface LoadAdapterOptions {
  force?: boolean; // skip the weight-fingerprint check (never the shape checks)
}

export function loadAdapter(path: string, host: MethodHost, o: LoadAdapterOptions = {}): Adapter {
  const f = readSafetensors(path);
  const m = f.metadata;
  check(
    m.format === ADAPTER_FORMAT,
    `${path}: not a llama-adapter file (__metadata__.format is ${JSON.stringify(m.format ?? null)}, expected "${ADAPTER_FORMAT}")`,
  );
  check(m.version === ADAPTER_VERSION, `${path}: adapter file version ${m.version} is not supported (expected ${ADAPTER_VERSION})`);
  const c = host.config;
  for (const [key, field] of ARCH_FIELDS) {
    if (Number(m[key]) !== c[field]) {
      throw new LlamaAdapterError(
        `${path}: adapter was trained for a base model with ${key.slice(5)}=${m[key]}, but this model has ${c[field]} (the adapter belongs to another base model)`,
      );
    }
  }
  if (m.base_fingerprint !== host.fingerprint && !o.force) {
    throw new LlamaAdapterError(
      `${path}: adapter was trained on base weights with fingerprint ${m.base_fingerprint}, this model's is ${host.fingerprint} (same architecture, different weights; pass --force to load anyway)`,
    );
  }
  const gate = m.gate ?? '';
  check(isGateMode(gate), `${path}: unknown gate convention "${gate}" (expected ${Object.keys(GATE_RULES).join(', ')})`);
  const a = new Adapter(host, { promptLength: Number(m.prompt_length), adapterLayers: Number(m.adapter_layers), gate });
  const params = a.parameters();
  for (const name of f.names()) {
    check(a.isParam(name), `${path}: unexpected tensor "${name}" in an adapter file`);
    check(params.has(name), `${path}: tensor "${name}" is for a layer this adapter (layers ${a.firstLayer}..${c.nLayers - 1}) does not adapt`);
  }
  for (const [name, p] of params) {
    check(f.names().includes(name), `${path}: missing tensor "${name}"`);
    const want = a.shapeOf(name);
    const got = f.info(name).shape;
    check(got.length === want.length && got.every((d, i) => d === want[i]), `${path}: tensor "${name}" has shape [${got}], expected [${want}]`);
    p.set(f.tensorF32(name));
  }
  for (const [k, v] of Object.entries(m)) a.meta[k] = v;
  a.invalidate();
  return a;
}
