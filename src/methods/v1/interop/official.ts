// Official LLaMA-Adapter v1 files (OpenGVLab/LLaMA-Adapter): a torch.save flat state dict with
// `adapter_query.weight` (L*K, D), row l*K + k = prompt token k of the l-th of the top L layers,
// and `layers.{i}.attention.gate` per layer, of shape (1, H, 1, 1) (alpaca_finetuning_v1 and later;
// its extract script saves gates for every layer, only the top L are used) or (1,) (the April 2023
// release file's code). K is not in the file (the official default is 10).
// Gate convention: the official training code applies tanh(gate) per head, its inference script
// uses the raw gate (OpenGVLab issue #39), so the file alone does not say. Documented default:
// (1, H, 1, 1) gates are read as `tanh-per-head` (how they were trained), (1,) gates as
// `raw-per-layer` (the only convention the code of that time had); `gate` overrides it.

import { check, LlamaAdapterError } from '../../../core/errors.js';
import { writeTorchFile } from '../../../core/pth.js';
import type { WritableTensor } from '../../../core/safetensors.js';
import { GATE_RULES, type GateMode } from '../gate.js';
import { checkShape, dtypeOf, type TensorSource } from './source.js';
import { checkTensors, gatesFor, type AdapterTensors } from './tensors.js';

const GATE_KEY = /^layers\.(\d+)\.attention\.gate$/;
const QUERY = 'adapter_query.weight';
export const OFFICIAL_DEFAULT_K = 10;

/** Does this state dict look like an official v1 adapter? (v2 files are recognised to be refused by name.) */
export function isOfficial(src: TensorSource): boolean {
  return src.names().includes(QUERY);
}

export function readOfficial(src: TensorSource, o: { gate?: GateMode; promptLength?: number }): AdapterTensors {
  const p = src.path;
  const names = src.names();
  const v2 = names.find((n) => n.startsWith('llama.') || n.startsWith('visual_') || n.startsWith('clip_proj'));
  check(!v2, `${p}: an official LLaMA-Adapter v2 file (tensor "${v2}"): v2's bias/scale tuning and visual prompts are not supported, only v1 adapters`);
  const gateNames = new Map<number, string>();
  for (const n of names) {
    if (n === QUERY) continue;
    const m = GATE_KEY.exec(n);
    if (!m)
      throw new LlamaAdapterError(`${p}: unexpected tensor "${n}" in an official LLaMA-Adapter v1 file (expected ${QUERY} and layers.{i}.attention.gate)`);
    check(m[1].length <= 6, `${p}: layer index in "${n}" is out of range`);
    gateNames.set(Number(m[1]), n);
  }
  const qShape = src.shape(QUERY);
  check(qShape.length === 2 && qShape[0] > 0 && qShape[1] > 0, `${p}: tensor "${QUERY}" has shape [${qShape}], expected (L*K, D)`);
  const [rows, D] = qShape;
  const K = o.promptLength ?? OFFICIAL_DEFAULT_K;
  check(
    Number.isSafeInteger(K) && K >= 1 && rows % K === 0,
    `${p}: "${QUERY}" has ${rows} rows, not a multiple of the prompt length K=${K} (the file does not store K: pass the one it was trained with, --adapter-prompt-length)`,
  );
  const L = rows / K;
  check(gateNames.size > 0, `${p}: no layers.{i}.attention.gate tensors`);
  const N = Math.max(...gateNames.keys()) + 1;
  check(L <= N, `${p}: ${L} adapted layers (${rows} prompt rows / K=${K}) but gates for only ${N} layers`);
  const layers = Array.from({ length: L }, (_, l) => N - L + l);
  const gShape = src.shape(gateNames.get(N - 1)!);
  const perHead = gShape.length === 4;
  check(
    (gShape.length === 1 && gShape[0] === 1) || (perHead && gShape[0] === 1 && gShape[1] >= 1 && gShape[2] === 1 && gShape[3] === 1),
    `${p}: tensor "${gateNames.get(N - 1)}" has shape [${gShape}], expected (1, H, 1, 1) or (1,)`,
  );
  const H = perHead ? gShape[1] : null;
  const gates: Float32Array[] = [];
  for (const l of layers) {
    const n = gateNames.get(l);
    check(n, `${p}: no gate for adapted layer ${l} (layers.${l}.attention.gate)`);
    checkShape(src, n!, gShape);
    gates.push(src.f32(n!));
  }
  for (const [l, n] of gateNames) if (l < N - L) checkShape(src, n, gShape);
  const q = src.f32(QUERY);
  const prompts = layers.map((_, l) => q.slice(l * K * D, (l + 1) * K * D));
  const chosen = o.gate ?? (perHead ? 'tanh-per-head' : 'raw-per-layer');
  const t: AdapterTensors = {
    format: 'official',
    path: p,
    promptLength: K,
    dim: D,
    layers,
    baseLayers: null,
    heads: H,
    kvHeads: null,
    prompts,
    gates,
    gate: chosen,
    gateChoice: o.gate ? 'option' : 'default',
    promptProjection: 'standard',
    dtype: dtypeOf(src, [QUERY, ...layers.map((l) => gateNames.get(l)!)]),
    notes: [],
    metadata: {},
  };
  if (perHead && chosen === 'raw-per-layer') {
    // one value per layer from per-head gates: only where every head agrees
    t.gates = gatesFor({ ...t, gate: 'raw-per-head' }, 'raw-per-layer', null, 'gate raw-per-layer');
  }
  if (!o.gate) {
    t.notes.push(
      perHead
        ? 'official gates read as tanh-per-head (how alpaca_finetuning_v1 trains them; the official inference script applies them raw: pass --adapter-gate raw-per-head for that)'
        : 'official (1,) gates read as raw-per-layer (the official code of April 2023)',
    );
  }
  if (o.promptLength === undefined) t.notes.push(`prompt length K=${K} assumed (the official default; the file does not store it)`);
  return checkTensors(t);
}

/**
 * Write `t` as an official v1 .pth (F32): adapter_query.weight and a gate for every layer of the
 * base (zeros below the adapted ones, as the official extract script saves them). Gates stay in
 * their convention: tanh-per-head and raw-per-head as (1, H, 1, 1), raw-per-layer as (1,). Returns
 * notes on how the file must be read back.
 */
export function writeOfficial(t: AdapterTensors, path: string): string[] {
  check(
    t.promptProjection === 'standard',
    `${t.path}: emulates litgpt's prompt K/V split, which the official code does not do: its official file would compute other outputs`,
  );
  const perHead = GATE_RULES[t.gate].perHead;
  const H = perHead ? (t.gates[0].length > 1 ? t.gates[0].length : t.heads) : 1;
  check(H, `${t.path}: the head count is needed to write per-head gates (give the base model)`);
  const gates = gatesFor(t, t.gate, perHead ? H : null, 'the official file');
  const N = t.baseLayers ?? (t.layers.at(-1) as number) + 1;
  const first = t.layers[0];
  const query = new Float32Array(t.layers.length * t.promptLength * t.dim);
  t.prompts.forEach((pr, i) => query.set(pr, i * pr.length));
  const tensors: WritableTensor[] = [{ name: QUERY, dtype: 'F32', shape: [t.layers.length * t.promptLength, t.dim], data: query }];
  for (let l = 0; l < N; l++) {
    const data = l >= first ? gates[l - first] : new Float32Array(perHead ? H! : 1);
    tensors.push({ name: `layers.${l}.attention.gate`, dtype: 'F32', shape: perHead ? [1, H!, 1, 1] : [1], data });
  }
  writeTorchFile(path, tensors);
  const notes: string[] = [];
  if (t.gate === 'raw-per-head') notes.push('gates are raw per head (the official inference script): load it back with --adapter-gate raw-per-head');
  if (t.promptLength !== OFFICIAL_DEFAULT_K)
    notes.push(`prompt length K=${t.promptLength} is not the official default 10: load it back with --adapter-prompt-length ${t.promptLength}`);
  return notes;
}
