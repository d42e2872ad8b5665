// The training checkpoint (`OUT.ckpt.safetensors`): everything `finetune --resume` needs to
// continue exactly where a run stopped. The adapter's trainable tensors (trainableTensors, the
// same filter that decides what trains and what the adapter file holds), their AdamW moments as
// `optimizer.m.{name}` / `optimizer.v.{name}`, and in __metadata__ the adapter file's fields plus
// `checkpoint`: JSON of the data position, the training arguments and the loss history.
// ("checkpoint" in this project means only this training state; the base model is a model file.)

import { check, LlamaAdapterError } from '../core/errors.js';
import { readSafetensors, writeSafetensors } from '../core/safetensors.js';
import { trainableTensors } from '../model/method.js';
import type { LlamaModel } from '../model/model.js';
import { Adapter } from '../methods/v1/adapter.js';
import { adapterMetadata } from '../methods/v1/file.js';
import type { GateMode } from '../methods/v1/gate.js';
import type { AdamW } from './optimizer.js';

/** Where a run stands in its data. */
export interface Position {
  step: number; // optimizer steps done
  epoch: number; // current epoch (0-based)
  micro: number; // next micro-batch index within the epoch
}

/** Write the training state atomically: the adapter's trainable tensors, their AdamW moments, the data position and the loss history. */
export function writeTrainingCheckpoint(
  path: string,
  a: Adapter,
  opt: AdamW,
  pos: Position,
  args: Record<string, unknown>,
  history: { step: number; loss: number }[],
): void {
  const tensors: { name: string; dtype: 'F32'; shape: number[]; data: Float32Array }[] = [];
  for (const [k, p] of trainableTensors(a)) {
    const shape = a.shapeOf(k);
    tensors.push({ name: k, dtype: 'F32', shape, data: p });
    tensors.push({ name: `optimizer.m.${k}`, dtype: 'F32', shape, data: opt.m.get(k)! });
    tensors.push({ name: `optimizer.v.${k}`, dtype: 'F32', shape, data: opt.v.get(k)! });
  }
  writeSafetensors(path, tensors, {
    ...adapterMetadata(a),
    checkpoint: JSON.stringify({ ...pos, args, history }),
  });
}

/** Read a training checkpoint for resuming; refuses one written with other training arguments or for another base. */
export function readTrainingCheckpoint(
  path: string,
  model: LlamaModel,
  args: Record<string, unknown>,
): {
  adapter: Adapter;
  pos: Position;
  m: Map<string, Float32Array>;
  v: Map<string, Float32Array>;
  history: { step: number; loss: number }[];
} {
  const f = readSafetensors(path);
  const meta = f.metadata;
  check(meta.checkpoint, `${path}: not a training checkpoint (no "checkpoint" metadata)`);
  const ck = JSON.parse(meta.checkpoint) as Position & { args: Record<string, unknown>; history: { step: number; loss: number }[] };
  for (const k of Object.keys(args)) {
    if (JSON.stringify(ck.args[k]) !== JSON.stringify(args[k])) {
      throw new LlamaAdapterError(`${path}: cannot resume: ${k} was ${JSON.stringify(ck.args[k])} in the checkpoint, now ${JSON.stringify(args[k])}`);
    }
  }
  check(
    meta.base_fingerprint === model.fingerprint,
    `${path}: checkpoint belongs to another base model (fingerprint ${meta.base_fingerprint}, this model ${model.fingerprint})`,
  );
  const a = new Adapter(model, { promptLength: Number(meta.prompt_length), adapterLayers: Number(meta.adapter_layers), gate: meta.gate as GateMode });
  const m = new Map<string, Float32Array>();
  const v = new Map<string, Float32Array>();
  for (const [k, p] of trainableTensors(a)) {
    p.set(f.tensorF32(k));
    m.set(k, f.tensorF32(`optimizer.m.${k}`));
    v.set(k, f.tensorF32(`optimizer.v.${k}`));
  }
  a.invalidate();
  return { adapter: a, pos: { step: ck.step, epoch: ck.epoch, micro: ck.micro }, m, v, history: ck.history };
}
