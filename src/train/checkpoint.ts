// The training checkpoint (`OUT.ckpt.safetensors`): everything `finetune --resume` needs to
// continue exactly where a run stopped. The adapter's trainable tensors (trainableTensors, the
// same filter that decides what trains and what the adapter file holds), their AdamW moments as
// `optimizer.m.{name}` / `optimizer.v.{name}`, and in __metadata__ the adapter file's fields plus
// `checkpoint`: JSON of the data position, the training arguments and the loss history.
// ("checkpoint" in this project means only this training state; the base model is a model file.)

import { atFile, check, LlamaAdapterError } from '../core/errors.js';
import { readSafetensors, writeSafetensors } from '../core/safetensors.js';
import { trainableTensors } from '../model/method.js';
import type { LlamaModel } from '../model/model.js';
import type { Adapter } from '../methods/v1/adapter.js';
import { adapterFromMetadata, adapterMetadata, metaJsonObject, readParam } from '../methods/v1/file.js';
import { MultimodalAdapter } from '../methods/v1/multimodal.js';
import { multimodalMetadata, recordedEncoder } from '../methods/v1/multimodal-file.js';
import type { EncoderIdentity } from '../vision/image-encoder.js';

/** What finetune trains: a text adapter or a multimodal one. */
export type TrainedAdapter = Adapter | MultimodalAdapter;
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
  a: TrainedAdapter,
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
    ...(a instanceof MultimodalAdapter ? multimodalMetadata(a) : adapterMetadata(a)),
    checkpoint: JSON.stringify({ ...pos, args, history }),
  });
}

/** The run a checkpoint is resumed into: what its position must be consistent with. */
export interface RunShape {
  microPerEpoch: number; // micro-batches per epoch
  accum: number; // micro-batches per optimizer step
  epochs: number;
  totalSteps: number;
}

export interface TrainingState {
  adapter: TrainedAdapter;
  pos: Position;
  m: Map<string, Float32Array>;
  v: Map<string, Float32Array>;
  history: { step: number; loss: number }[];
}

/**
 * Read a training checkpoint for resuming. Trusts nothing: refuses one written with other training
 * arguments or for another base, a position that does not fit the run (or is missing: a resume
 * from `micro: undefined` would spin forever), a tensor set, shape or dtype other than the
 * adapter's, and non-finite values; any other failure is an error naming the file.
 */
export function readTrainingCheckpoint(
  path: string,
  model: LlamaModel,
  args: Record<string, unknown>,
  run: RunShape,
  encoder: EncoderIdentity | null = null,
): TrainingState {
  return atFile(path, () => {
    const f = readSafetensors(path);
    const meta = f.metadata;
    check(meta.checkpoint, `${path}: not a training checkpoint (no "checkpoint" metadata)`);
    const ck = metaJsonObject(path, meta, 'checkpoint');
    check(
      typeof ck.args === 'object' && ck.args !== null && !Array.isArray(ck.args),
      `${path}: __metadata__ "checkpoint" has no "args" object (the training arguments)`,
    );
    const ckArgs = ck.args as Record<string, unknown>;
    for (const k of Object.keys(args)) {
      if (JSON.stringify(ckArgs[k]) !== JSON.stringify(args[k])) {
        throw new LlamaAdapterError(`${path}: cannot resume: ${k} was ${JSON.stringify(ckArgs[k])} in the checkpoint, now ${JSON.stringify(args[k])}`);
      }
    }
    check(
      meta.base_fingerprint === model.fingerprint,
      `${path}: checkpoint belongs to another base model (fingerprint ${meta.base_fingerprint}, this model ${model.fingerprint})`,
    );
    const pos = readPosition(path, ck, run);
    const history = readHistory(path, ck.history, pos.step);

    const rec = recordedEncoder(path, meta);
    check(
      !!rec === !!encoder,
      `${path}: ${rec ? 'a multimodal checkpoint: resume it with its --image-encoder' : "a text adapter's checkpoint: resume it without --image-encoder"}`,
    );
    let a: TrainedAdapter = adapterFromMetadata(path, meta, model, { multimodal: !!rec });
    if (rec && encoder) {
      a = new MultimodalAdapter(a, rec.identity);
      a.checkEncoder(encoder, path);
    }
    const params = trainableTensors(a);
    const expected = new Set<string>();
    for (const k of params.keys()) for (const n of [k, `optimizer.m.${k}`, `optimizer.v.${k}`]) expected.add(n);
    for (const n of f.names()) check(expected.has(n), `${path}: unexpected tensor "${n}" in a training checkpoint of this adapter`);
    const m = new Map<string, Float32Array>();
    const v = new Map<string, Float32Array>();
    const tensor = (name: string, shape: number[]): Float32Array => {
      check(f.has(name), `${path}: missing tensor "${name}"`);
      const dt = f.info(name).dtype;
      check(dt === 'F32', `${path}: tensor "${name}" has dtype ${dt}, expected F32 (checkpoints are written in F32)`);
      return readParam(path, f, name, shape);
    };
    for (const [k, p] of params) {
      const shape = a.shapeOf(k);
      p.set(tensor(k, shape));
      m.set(k, tensor(`optimizer.m.${k}`, shape));
      const vk = tensor(`optimizer.v.${k}`, shape);
      const neg = vk.findIndex((x) => x < 0);
      check(neg < 0, () => `${path}: tensor "optimizer.v.${k}" holds a negative second moment (${vk[neg]} at element ${neg})`);
      v.set(k, vk);
    }
    a.invalidate();
    return { adapter: a, pos, m, v, history };
  });
}

/** The position fields, each an integer in range and consistent with the run: step = epoch x steps per epoch + ceil(micro / accum). */
function readPosition(path: string, ck: Record<string, unknown>, run: RunShape): Position {
  const field = (key: keyof Position, max: number): number => {
    const x = ck[key];
    check(
      Number.isSafeInteger(x) && (x as number) >= 0 && (x as number) <= max,
      () => `${path}: checkpoint position "${key}" is ${JSON.stringify(x ?? null)}, expected an integer from 0 to ${max} for this run`,
    );
    return x as number;
  };
  const pos = { step: field('step', run.totalSteps), epoch: field('epoch', run.epochs), micro: field('micro', run.microPerEpoch) };
  const stepsPerEpoch = Math.ceil(run.microPerEpoch / run.accum);
  const want = pos.epoch * stepsPerEpoch + Math.ceil(pos.micro / run.accum);
  check(
    pos.step === want,
    () => `${path}: checkpoint position is inconsistent: step ${pos.step}, but epoch ${pos.epoch} micro-batch ${pos.micro} means step ${want} in this run`,
  );
  return pos;
}

function readHistory(path: string, raw: unknown, step: number): { step: number; loss: number }[] {
  check(Array.isArray(raw), `${path}: checkpoint has no "history" list (the loss per step)`);
  return (raw as unknown[]).map((h, i) => {
    const e = h as { step?: unknown; loss?: unknown } | null;
    check(
      e !== null && typeof e === 'object' && Number.isSafeInteger(e.step) && (e.step as number) >= 1 && (e.step as number) <= step,
      () => `${path}: checkpoint history entry ${i + 1} has no step from 1 to ${step}: ${JSON.stringify(h)}`,
    );
    check(typeof e.loss === 'number' && Number.isFinite(e.loss), () => `${path}: checkpoint history entry ${i + 1} has no finite loss: ${JSON.stringify(h)}`);
    return { step: e.step as number, loss: e.loss };
  });
}
