// Reading an encoder's tensors from a Hugging Face safetensors file: names with or without the base
// model's key prefix (`vit.` / `roberta.` in *ForImageClassification / *ForQuestionAnswering /
// *ForSequenceClassification files, none in a bare ViTModel / RobertaModel), head keys never
// prefixed; every tensor's shape checked against the config before its values are read, every value
// finite; F32 / F16 / BF16 / F64 stored, f32 in memory. The weights' fingerprint (sha256 over a
// strided sample of every tensor read, in reading order) names the base in adapter files.

import { createHash, type Hash } from 'node:crypto';
import { check, LlamaAdapterError } from '../../core/errors.js';
import type { SafetensorsFile } from '../../core/safetensors.js';
import type { Matrix } from '../../core/weights.js';
import { TensorSample } from '../../formats/fingerprint.js';
import type { EncoderLayerWeights } from './stack.js';

export class HfTensors {
  readonly prefix: string;
  private readonly hash: Hash = createHash('sha256');

  /** `prefix`: the base model's key prefix ('vit.' / 'roberta.'), used when the file has `probe` under it. */
  constructor(
    readonly file: SafetensorsFile,
    prefix: string,
    probe: string,
  ) {
    this.prefix = file.has(prefix + probe) ? prefix : '';
    check(this.prefix !== '' || file.has(probe), `${file.path}: neither "${prefix}${probe}" nor "${probe}" is in the file (not this kind of model)`);
  }

  /** Whether the base model has tensor `name` (prefix added); `head`: a head key, never prefixed. */
  has(name: string, head = false): boolean {
    return this.file.has(head ? name : this.prefix + name);
  }

  /** Tensor `name` (prefix added unless `head`), checked to have `shape`, as f32. */
  tensor(name: string, shape: readonly number[], head = false): Float32Array {
    const full = head ? name : this.prefix + name;
    const path = this.file.path;
    check(this.file.has(full), `${path}: missing tensor "${full}"`);
    const got = this.file.info(full).shape;
    check(
      got.length === shape.length && got.every((d, i) => d === shape[i]),
      `${path}: tensor "${full}" has shape [${got}], expected [${shape}] for this config`,
    );
    const data = this.file.tensorF32(full);
    for (let i = 0; i < data.length; i++)
      if (!Number.isFinite(data[i])) throw new LlamaAdapterError(`${path}: tensor "${full}" holds ${data[i]} at element ${i}`);
    const s = new TensorSample(shape);
    s.feedF32(data);
    this.hash.update(`${name} ${shape.join('x')}\n`);
    this.hash.update(new Uint8Array(s.values.buffer, s.values.byteOffset, s.values.byteLength));
    return data;
  }

  /** A (rows, cols) f32 matrix (`shape` as stored when it is not [rows, cols], e.g. a Conv2d kernel). */
  mat(name: string, rows: number, cols: number, shape: readonly number[] = [rows, cols], head = false): Matrix {
    return { dtype: 'f32', rows, cols, data: this.tensor(name, shape, head) };
  }

  /** The rows of a head weight as stored (its first dimension), or 0 when the file has no such head. */
  headRows(name: string): number {
    return this.file.has(name) ? (this.file.info(name).shape[0] ?? 0) : 0;
  }

  /** Hash of everything read so far (16 hex digits). */
  fingerprint(): string {
    return this.hash.digest('hex').slice(0, 16);
  }
}

/** A linear head of a checkpoint: y = x W^T + b. */
export interface LinearHead {
  w: Matrix; // (out, C)
  b: Float32Array; // (out)
}

/** Read one HF encoder layer (key names per architecture) into EncoderLayerWeights. */
export function readLayer(t: HfTensors, names: Record<keyof EncoderLayerWeights, string>, C: number, I: number, qkvBias: boolean): EncoderLayerWeights {
  const m = (k: keyof EncoderLayerWeights, rows: number, cols: number): Matrix => t.mat(names[k], rows, cols);
  const v = (k: keyof EncoderLayerWeights, n: number): Float32Array => t.tensor(names[k], [n]);
  return {
    wq: m('wq', C, C),
    bq: qkvBias ? v('bq', C) : null,
    wk: m('wk', C, C),
    bk: qkvBias ? v('bk', C) : null,
    wv: m('wv', C, C),
    bv: qkvBias ? v('bv', C) : null,
    wo: m('wo', C, C),
    bo: v('bo', C),
    ln1w: v('ln1w', C),
    ln1b: v('ln1b', C),
    ln2w: v('ln2w', C),
    ln2b: v('ln2b', C),
    fc1: m('fc1', I, C),
    fc1b: v('fc1b', I),
    fc2: m('fc2', C, I),
    fc2b: v('fc2b', C),
  };
}

/** A checkpoint's linear layer `name`.weight / .bias, or null when absent: a task head (never prefixed), or with `base` the base model's pooler. */
export function readHead(t: HfTensors, name: string, C: number, base = false): LinearHead | null {
  const rows = t.headRows(`${base ? t.prefix : ''}${name}.weight`);
  if (!rows) return null;
  return { w: t.mat(`${name}.weight`, rows, C, [rows, C], !base), b: t.tensor(`${name}.bias`, [rows], !base) };
}
