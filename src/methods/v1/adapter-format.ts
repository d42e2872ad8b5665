// The adapter file's format, over a parsed safetensors file or bytes (no file system: the browser
// build saves and loads adapters with it; methods/v1/file.ts does it with files): a self-describing
// .safetensors with tensors `layers.{i}.adaption_prompt` (K, dim) and `layers.{i}.adaption_gate`
// (nHeads, or 1 for raw-per-layer), and __metadata__ naming the format, gate convention, prompt
// length, the base model's architecture and weight fingerprint, and the training arguments.
// Loading onto a different base fails clearly; a corrupt file fails naming itself.

import { CONFIG_LIMITS } from '../../core/config.js';
import { atFile, check, LlamaAdapterError } from '../../core/errors.js';
import { checkFinite } from '../../core/finite.js';
import { joinParts, safetensorsFromBytes, safetensorsParts, type SafetensorsFile } from '../../core/safetensors-bytes.js';
import { trainableTensors, type AdapterMethod, type MethodHost } from '../../model/method.js';
import { Adapter } from './adapter.js';
import { gateSize, isGateMode, GATE_RULES } from './gate.js';
import { checkTensors, type AdapterTensors } from './interop/tensors.js';
import { isPromptProjection, PROMPT_PROJECTIONS } from './prompt-projection.js';

export const ADAPTER_FORMAT = 'llama-adapter';
export const ADAPTER_VERSION = '1';
/** __metadata__.method of a multimodal adapter (methods/v1/multimodal-file.ts); absent for a text adapter. */
/** The multimodal method's projection tensors (methods/v1/multimodal.ts), named here so this file needs nothing of it. */
export const PROJ_NAMES = ['proj.weight', 'proj.bias', 'proj_norm.weight', 'proj_norm.bias'] as const;
export const MULTIMODAL_METHOD = 'multimodal';
/** __metadata__.method of a task adapter (prompts + a task head over ViT / RoBERTa / LLaMA: methods/prompts/file.ts). */
export const TASK_METHOD = 'task';

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
  if ((a.config.promptProjection ?? 'standard') !== 'standard') m.prompt_projection = a.config.promptProjection!;
  for (const [key, field] of ARCH_FIELDS) m[key] = String(c[field]);
  for (const [k, v] of Object.entries(a.meta)) if (!(k in m)) m[k] = v;
  return m;
}

/** A method file's bytes in parts: its trainable tensors (its one filter) as F32 with `metadata` (`path` names it in errors). */
export function methodFileParts(
  a: Pick<AdapterMethod<unknown>, 'tensors' | 'isParam' | 'shapeOf'>,
  path: string,
  metadata: Record<string, string>,
): Uint8Array[] {
  const tensors = [...trainableTensors(a)].map(([name, data]) => ({
    name,
    dtype: 'F32' as const,
    shape: a.shapeOf(name),
    data,
  }));
  return safetensorsParts(path, tensors, metadata);
}

/** The adapter file's bytes (what saveAdapter writes). On a device backend, sync the parameters first. */
export function adapterBytes(a: Adapter): Uint8Array {
  return joinParts(methodFileParts(a, 'adapter', adapterMetadata(a)));
}

/** Header-level view of an adapter file (for `inspect`). */
export function adapterInfo(f: SafetensorsFile): AdapterFileInfo {
  return { metadata: f.metadata, tensors: f.names().map((n) => ({ name: n, shape: f.info(n).shape })) };
}

export interface OwnAdapterOptions {
  force?: boolean; // skip the weight-fingerprint check (never the shape checks)
}

/**
 * Load an adapter file onto `host`. Nothing in the file is trusted: every metadata number is
 * parsed strictly and bounded by the model (prompt length by its context, layers by its layers),
 * shapes are checked before any value is read, every value must be finite, and whatever else
 * goes wrong becomes an error naming the file.
 */
export function adapterFromFile(path: string, f: () => SafetensorsFile, host: MethodHost, o: OwnAdapterOptions = {}): Adapter {
  return atFile(path, () => {
    const file = f();
    const a = adapterFromMetadata(path, file.metadata, host, o);
    const params = a.parameters();
    for (const name of file.names()) {
      check(a.isParam(name), `${path}: unexpected tensor "${name}" in an adapter file`);
      check(params.has(name), `${path}: tensor "${name}" is for a layer this adapter (layers ${a.firstLayer}..${host.config.nLayers - 1}) does not adapt`);
    }
    for (const [name, p] of params) p.set(readParam(path, file, name, a.shapeOf(name)));
    for (const [k, v] of Object.entries(file.metadata)) a.meta[k] = v;
    a.invalidate();
    return a;
  });
}

/** An adapter file's bytes loaded onto `host` (as adapterFromFile; `name` is what errors call it). */
export function adapterFromBytes(name: string, bytes: Uint8Array, host: MethodHost, o: OwnAdapterOptions = {}): Adapter {
  return adapterFromFile(name, () => safetensorsFromBytes(name, bytes), host, o);
}

/** A parameter tensor of an adapter or checkpoint file: present, of the expected shape, all values finite. */
export function readParam(path: string, f: SafetensorsFile, name: string, want: readonly number[]): Float32Array {
  check(f.has(name), `${path}: missing tensor "${name}"`);
  const got = f.info(name).shape;
  check(got.length === want.length && got.every((d, i) => d === want[i]), `${path}: tensor "${name}" has shape [${got}], expected [${want}]`);
  const data = f.tensorF32(name);
  checkFinite(path, name, data);
  return data;
}

/**
 * An integer metadata field, parsed strictly (decimal digits only: "1e9", "", "10.5" and a missing
 * field are errors, not NaN) and within [min, max].
 */
export function metaInt(path: string, m: Record<string, string>, key: string, min: number, max: number, why = ''): number {
  const v = m[key];
  check(v !== undefined, `${path}: __metadata__ has no "${key}"`);
  const n = /^\d{1,15}$/.test(v) ? Number(v) : Number.NaN;
  check(
    n >= min && n <= max,
    () => `${path}: __metadata__ "${key}" is ${JSON.stringify(v)}, expected an integer from ${min} to ${max}${why ? ` (${why})` : ''}`,
  );
  return n;
}

/** The prompt style the adapter was trained with (training_args.prompt_style), if its file says; loadAdapter has checked the JSON. */
export function trainingPromptStyle(a: Adapter): string | undefined {
  if (a.meta.training_args === undefined) return undefined;
  const style = metaJsonObject('adapter', a.meta, 'training_args').prompt_style;
  return typeof style === 'string' ? style : undefined;
}

/** A metadata field holding a JSON object, parsed (invalid JSON or another value is an error naming file and field). */
export function metaJsonObject(path: string, m: Record<string, string>, key: string): Record<string, unknown> {
  const v = m[key];
  check(v !== undefined, `${path}: __metadata__ has no "${key}"`);
  let j: unknown;
  try {
    j = JSON.parse(v);
  } catch (e) {
    throw new LlamaAdapterError(`${path}: __metadata__ "${key}" is not valid JSON (${(e as Error).message})`, { cause: e });
  }
  check(typeof j === 'object' && j !== null && !Array.isArray(j), `${path}: __metadata__ "${key}" is not a JSON object`);
  return j as Record<string, unknown>;
}

/** The (still zero) adapter an adapter file's or checkpoint's metadata describes, checked against `host`. */
export function adapterFromMetadata(path: string, m: Record<string, string>, host: MethodHost, o: OwnAdapterOptions & { multimodal?: boolean } = {}): Adapter {
  check(
    m.format === ADAPTER_FORMAT,
    `${path}: not a llama-adapter file (__metadata__.format is ${JSON.stringify(m.format ?? null)}, expected "${ADAPTER_FORMAT}")`,
  );
  if (m.method === MULTIMODAL_METHOD && !o.multimodal) {
    throw new LlamaAdapterError(
      `${path}: a multimodal adapter (trained with an image encoder${m.image_encoder_path ? ` at ${m.image_encoder_path}` : ''}); load it with its image encoder (--image-encoder PATH, loadMultimodalAdapter)`,
    );
  }
  refuseTaskAdapter(path, m);
  check(m.version === ADAPTER_VERSION, `${path}: adapter file version ${m.version} is not supported (expected ${ADAPTER_VERSION})`);
  const c = host.config;
  for (const [key, field] of ARCH_FIELDS) {
    if (m[key] !== String(c[field])) {
      throw new LlamaAdapterError(
        `${path}: adapter was trained for a base model with ${key.slice(5)}=${m[key] ?? '(missing)'}, but this model has ${c[field]} (the adapter belongs to another base model)`,
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
  const promptLength = metaInt(path, m, 'prompt_length', 1, c.maxSeqLen, "at most the model's context");
  const adapterLayers = metaInt(path, m, 'adapter_layers', 1, c.nLayers, "at most the model's layers");
  if (m.first_layer !== undefined) {
    metaInt(path, m, 'first_layer', c.nLayers - adapterLayers, c.nLayers - adapterLayers, 'layers minus adapter_layers');
  }
  if (m.training_args !== undefined) metaJsonObject(path, m, 'training_args');
  const promptProjection = promptProjectionOf(path, m);
  return new Adapter(host, { promptLength, adapterLayers, gate, ...(promptProjection === 'standard' ? {} : { promptProjection }) });
}

function promptProjectionOf(path: string, m: Record<string, string>) {
  const pp = m.prompt_projection ?? 'standard';
  check(isPromptProjection(pp), `${path}: unknown prompt_projection "${pp}" (expected ${Object.keys(PROMPT_PROJECTIONS).join(', ')})`);
  return pp;
}

/** A task adapter is not a LLaMA-Adapter: say so by name. */
function refuseTaskAdapter(path: string, m: Record<string, string>): void {
  if (m.method === TASK_METHOD)
    throw new LlamaAdapterError(
      `${path}: a task adapter (${m.task ?? 'a task'} head${m.prompt_mode && m.prompt_mode !== 'none' ? ` with ${m.prompt_mode} prompts` : ''} over a ${m.base_architecture ?? 'other'} base); use it with \`llama-adapter task eval\``,
    );
}

/**
 * An adapter file of this library read without a base model (for inspect and convert): its tensors
 * and the base its metadata names. A multimodal file is refused unless `textPart` (inspect): then its
 * prompts and gates are read and the projection tensors (PROJ_NAMES) are left to the caller.
 */
export function ownTensorsFrom(path: string, file: () => SafetensorsFile, o: { textPart?: boolean } = {}): AdapterTensors {
  return atFile(path, () => {
    const f = file();
    const m = f.metadata;
    check(m.format === ADAPTER_FORMAT, `${path}: not a llama-adapter file (__metadata__.format is ${JSON.stringify(m.format ?? null)})`);
    check(m.version === ADAPTER_VERSION, `${path}: adapter file version ${m.version} is not supported (expected ${ADAPTER_VERSION})`);
    const multimodal = m.method === MULTIMODAL_METHOD;
    check(!multimodal || o.textPart, `${path}: a multimodal adapter (its image projection has no place in the other formats)`);
    refuseTaskAdapter(path, m);
    const gate = m.gate ?? '';
    check(isGateMode(gate), `${path}: unknown gate convention "${gate}" (expected ${Object.keys(GATE_RULES).join(', ')})`);
    const D = metaInt(path, m, 'base_dim', 1, CONFIG_LIMITS.dim);
    const N = metaInt(path, m, 'base_layers', 1, CONFIG_LIMITS.nLayers);
    const H = metaInt(path, m, 'base_heads', 1, CONFIG_LIMITS.nHeads);
    const Hkv = metaInt(path, m, 'base_kv_heads', 1, H);
    const K = metaInt(path, m, 'prompt_length', 1, CONFIG_LIMITS.maxSeqLen);
    const L = metaInt(path, m, 'adapter_layers', 1, N, 'at most base_layers');
    const layers = Array.from({ length: L }, (_, i) => N - L + i);
    const wanted = new Set([...layers.flatMap((l) => [`layers.${l}.adaption_prompt`, `layers.${l}.adaption_gate`]), ...(multimodal ? PROJ_NAMES : [])]);
    for (const n of f.names()) check(wanted.has(n), `${path}: unexpected tensor "${n}" in an adapter file`);
    return checkTensors({
      format: 'llama-adapter',
      path,
      promptLength: K,
      dim: D,
      layers,
      baseLayers: N,
      heads: H,
      kvHeads: Hkv,
      prompts: layers.map((l) => readParam(path, f, `layers.${l}.adaption_prompt`, [K, D])),
      gates: layers.map((l) => readParam(path, f, `layers.${l}.adaption_gate`, [gateSize(gate, H)])),
      gate,
      gateChoice: 'file',
      promptProjection: promptProjectionOf(path, m),
      dtype: 'F32',
      notes: [],
      metadata: m,
    });
  });
}
