// One view of the named tensors a third-party adapter file holds, whether it is a safetensors file
// or a torch.save state dict (flat, or wrapped as {"model": {...}} as litgpt and the official v2
// files are), so each format's reader deals in names, shapes and float32 values only.

import { check, LlamaAdapterError } from '../../../core/errors.js';
import { checkFinite } from '../../../core/finite.js';
import { PyDict, typeName } from '../../../core/pickle.js';
import { TorchTensor, type TorchFile } from '../../../core/pth.js';
import type { SafetensorsFile } from '../../../core/safetensors.js';

export interface TensorSource {
  readonly path: string;
  names(): string[];
  shape(name: string): number[];
  dtype(name: string): string;
  /** Values as float32, every one finite (else an error naming the file and tensor). */
  f32(name: string): Float32Array;
}

export function safetensorsSource(f: SafetensorsFile): TensorSource {
  return {
    path: f.path,
    names: () => f.names(),
    shape: (n) => f.info(n).shape,
    dtype: (n) => f.info(n).dtype,
    f32: (n) => finite(f.path, n, f.tensorF32(n)),
  };
}

/** The state dict of a torch file: the top-level dict, or its "model" entry when it has one ({"model": {...}}). */
export function torchSource(f: TorchFile): TensorSource {
  check(f.root instanceof PyDict, `${f.path}: holds a ${typeName(f.root)}, not a state dict`);
  const root = f.root as PyDict;
  const inner = root.map.get('model');
  const sd = inner instanceof PyDict ? inner : root;
  const tensors = new Map<string, TorchTensor>();
  for (const [k, v] of sd.map) {
    check(typeof k === 'string', `${f.path}: state dict key ${String(k)} is not a string`);
    check(v instanceof TorchTensor, `${f.path}: state dict entry "${k}" is a ${typeName(v)}, not a tensor`);
    tensors.set(k as string, v as TorchTensor);
  }
  const get = (n: string): TorchTensor => {
    const t = tensors.get(n);
    if (!t) throw new LlamaAdapterError(`${f.path}: no tensor "${n}"`);
    return t;
  };
  return {
    path: f.path,
    names: () => [...tensors.keys()],
    shape: (n) => [...get(n).shape],
    dtype: (n) => get(n).dtype,
    f32: (n) => finite(f.path, n, f.tensorF32(get(n), n)),
  };
}

function finite(path: string, name: string, a: Float32Array): Float32Array {
  checkFinite(path, name, a);
  return a;
}

/** `shape` equals `want`, else an error naming the file, tensor and both shapes. */
export function checkShape(src: TensorSource, name: string, want: readonly number[]): void {
  const got = src.shape(name);
  check(got.length === want.length && got.every((d, i) => d === want[i]), () => `${src.path}: tensor "${name}" has shape [${got}], expected [${want}]`);
}

/** The one dtype of `names` (mixed dtypes are reported as such). */
export function dtypeOf(src: TensorSource, names: readonly string[]): string {
  const set = new Set(names.map((n) => src.dtype(n)));
  return [...set].join('+');
}
