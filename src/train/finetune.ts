// finetune(): the LLaMA-Adapter training loop. Reads instruction data, holds out the first
// `valSize` records for validation (as the paper), shuffles the rest per epoch from the seed,
// trains the adapter with AdamW + warmup/cosine schedule, gradient accumulation and optional
// clipping, evaluates each epoch, and writes checkpoints atomically. A checkpoint holds the
// adapter, the optimizer moments and the position in the data, so `resume` continues exactly:
// the resumed run's losses and final bytes equal the uninterrupted run's.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { createAdapter } from '../methods/v1/adapter.js';
import { saveAdapter } from '../methods/v1/file.js';
import { createMultimodalAdapter, MultimodalAdapter } from '../methods/v1/multimodal.js';
import { saveMultimodalAdapter } from '../methods/v1/multimodal-file.js';
import type { PromptSource } from '../model/method.js';
import { FeatureStore } from '../vision/features.js';
import type { ImageEncoder } from '../vision/image-encoder.js';
import type { GateMode } from '../methods/v1/gate.js';
import { check, LlamaAdapterError } from '../core/errors.js';
import { writeFileAtomic } from '../core/fs.js';
import type { LlamaModel } from '../model/model.js';
import { trainableTensors } from '../model/method.js';
import { readTrainingCheckpoint, writeTrainingCheckpoint, type Position, type TrainedAdapter } from './checkpoint.js';
import { Rng } from '../core/rng.js';
import { padBatch, parseInstructionData, tokenizeExample, type Example } from './data.js';
import { AdamW } from './optimizer.js';
import { type MicroBatch, optimizerStep, stepBuffers } from './step.js';
import { writeLossPlot } from './plot.js';
import { isPromptStyle, type InstructionRecord, type PromptStyleName } from './prompt-styles.js';
import { learningRate, peakLearningRate } from './schedule.js';

export interface FinetuneOptions {
  model: LlamaModel;
  data: string | InstructionRecord[]; // a data file (JSON array / JSONL) or records
  dataName?: string; // what errors and training_args call `data` when it is records (default "(records)")
  out: string; // adapter .safetensors to write
  adapter?: TrainedAdapter; // train this adapter (created for or loaded onto `model`) instead of a new one; K, L, gate are its own
  /** Multimodal training: the frozen encoder of the records' `image` files (a multimodal adapter is trained). */
  imageEncoder?: ImageEncoder;
  imageDir?: string; // relative image paths resolve here (default: the data file's folder, else the working directory)
  featureCache?: string | null; // on-disk feature cache folder (default none; features are always cached in memory)
  /** Features of a record's image given by the caller (e.g. computed in memory) instead of read and encoded; null = read the file. */
  imageFeatures?: (image: string) => Float32Array | null;
  promptLength?: number; // K (default 10)
  adapterLayers?: number; // L (default min(30, nLayers))
  gate?: GateMode; // default tanh-per-head
  gateInit?: 'zero' | 'random'; // 'random' = the paper's ablation
  epochs?: number; // default 5
  maxSteps?: number; // cap on optimizer steps (also the schedule's length when smaller)
  batchSize?: number; // micro-batch rows (default 4)
  gradAccum?: number; // micro-batches per optimizer step (default 1)
  lr?: number; // absolute peak lr (overrides blr)
  blr?: number; // base lr: peak = blr x batchSize x gradAccum / 256 (default 9e-3)
  minLr?: number; // default 0
  weightDecay?: number; // on prompts only (default 0.02)
  warmupEpochs?: number; // default 2 (ignored when warmupSteps is given)
  warmupSteps?: number;
  clipGrad?: number; // global-norm clipping (default off)
  maxSeqLen?: number; // default 512
  valSize?: number; // first N records held out (default 200)
  promptStyle?: PromptStyleName; // default alpaca
  seed?: number; // init and data order (default 0)
  resume?: string; // checkpoint to continue from
  checkpoint?: string; // checkpoint path (default: out with .ckpt.safetensors)
  checkpointEvery?: number; // optimizer steps between checkpoints (default: each epoch)
  metrics?: string | null; // metrics JSONL (default: out with .metrics.jsonl; null = none)
  plot?: string | null; // loss-curve SVG (default: out with .loss.svg; null = none)
  overwrite?: boolean; // a fresh run may replace an existing checkpoint (default: refuse)
  signal?: AbortSignal; // abort: finish the step, write adapter + checkpoint, return with aborted: true
  onProgress?: (p: FinetuneProgress) => void;
  onEpoch?: (e: EpochReport) => void;
}

export interface FinetuneProgress {
  step: number; // optimizer steps done
  totalSteps: number;
  epoch: number; // fractional epoch
  loss: number; // mean loss of this step
  lr: number;
  tokensPerS: number; // non-padding tokens per second (this run)
  etaS: number;
  gradNorm: number;
}

export interface EpochReport {
  epoch: number; // 1-based epoch just finished
  valLoss: number | null;
}

export interface FinetuneResult {
  adapter: TrainedAdapter;
  steps: number;
  losses: number[]; // per optimizer step, this run's steps only
  valLosses: EpochReport[];
  aborted: boolean;
  checkpoint: string;
  trainTokens: number; // tokens of the training split (one epoch, padding excluded)
}

/** Largest peak learning rate a run accepts. */
const MAX_LR = 1;

/**
 * On resume, drop the metrics lines a killed run wrote after its checkpoint (they are written
 * again): step lines after `pos.step` and epoch lines after `pos.epoch` epochs.
 */
function truncateMetrics(file: string, pos: Position): void {
  if (!fs.existsSync(file)) return;
  const kept = fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => {
      if (!line.trim()) return false;
      let r: { step?: unknown; epoch?: unknown; val_loss?: unknown };
      try {
        r = JSON.parse(line) as typeof r;
      } catch {
        return false; // a line cut by a kill
      }
      if ('val_loss' in r) return typeof r.epoch === 'number' && r.epoch <= pos.epoch;
      return typeof r.step === 'number' && r.step <= pos.step;
    });
  writeFileAtomic(file, kept.map((l) => `${l}\n`).join(''));
}

/**
 * Read instruction records (a UTF-8 BOM and CRLF line endings read the same as plain LF text);
 * errors name the file and the record (JSON arrays) or line (JSONL), both numbered from 1.
 */
export function readInstructionData(path: string): InstructionRecord[] {
  let text: string;
  try {
    text = fs.readFileSync(path, 'utf8');
  } catch (e) {
    throw new LlamaAdapterError(`${path}: cannot read data file (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
  }
  return parseInstructionData(text, path);
}

function stem(p: string): string {
  return p.replace(/\.safetensors$/, '');
}

export async function finetune(o: FinetuneOptions): Promise<FinetuneResult> {
  const model = o.model;
  const records = typeof o.data === 'string' ? readInstructionData(o.data) : o.data;
  const dataName = typeof o.data === 'string' ? o.data : (o.dataName ?? '(records)');
  const style = o.promptStyle ?? 'alpaca';
  check(isPromptStyle(style), `unknown prompt style "${style}"`);
  const valSize = o.valSize ?? 200;
  check(
    valSize >= 0 && records.length > valSize,
    `${dataName}: ${records.length} records, but --val-size ${valSize} would leave none for training (use a smaller --val-size)`,
  );
  const maxSeqLen = Math.min(o.maxSeqLen ?? 512, model.config.maxSeqLen);
  const tok = model.tokenizer;
  const toEx = (r: InstructionRecord): Example => tokenizeExample(tok, r, style, maxSeqLen);
  const val = records.slice(0, valSize).map(toEx);
  const train = records.slice(valSize).map(toEx);
  // image features, once per distinct image (the encoder is frozen)
  const enc = o.imageEncoder ?? null;
  const imgDir = o.imageDir ?? (typeof o.data === 'string' ? path.dirname(o.data) : '.');
  const where = (i: number): string => `${dataName}: record ${i + 1}`;
  const withImage = records.map((r, i) => ({ r, i })).filter(({ r }) => r.image !== undefined);
  if (!enc && withImage.length > 0) {
    throw new LlamaAdapterError(`${where(withImage[0].i)} has an image (${withImage[0].r.image}) but no image encoder was given (--image-encoder PATH)`);
  }
  const feats: (Float32Array | null)[] = new Array(records.length).fill(null);
  if (enc) {
    check(withImage.length > 0, `${dataName}: no record has an "image" field, so there is nothing to train the image projection on`);
    const given = withImage.map(({ r }) => o.imageFeatures?.(r.image!) ?? null);
    const toRead = withImage.filter((_, k) => !given[k]);
    const store = new FeatureStore(enc, o.featureCache ?? null);
    const got = await store.ofFiles(
      toRead.map(({ r }) => path.resolve(imgDir, r.image!)),
      toRead.map(({ i }) => where(i)),
    );
    let g = 0;
    withImage.forEach(({ i }, k) => (feats[i] = given[k] ?? got[g++]));
  }
  const valFeats = feats.slice(0, valSize),
    trainFeats = feats.slice(valSize);

  const batchSize = o.batchSize ?? 4;
  const accum = o.gradAccum ?? 1;
  const epochs = o.epochs ?? 5;
  const seed = o.seed ?? 0;
  check(batchSize >= 1 && accum >= 1 && epochs >= 1, 'batch size, grad accumulation and epochs must be >= 1');
  const microPerEpoch = Math.ceil(train.length / batchSize);
  const stepsPerEpoch = Math.ceil(microPerEpoch / accum);
  const totalSteps = Math.min(epochs * stepsPerEpoch, o.maxSteps ?? Infinity);
  const peakLr = peakLearningRate({ lr: o.lr, blr: o.blr, effectiveBatch: batchSize * accum });
  // above 1 AdamW moves every parameter by about its lr per step: such a run only diverges
  check(peakLr > 0 && peakLr <= MAX_LR, `peak learning rate ${peakLr} is outside (0, ${MAX_LR}] (the paper's is 1.125e-3 for batch 32)`);
  const warmupSteps = o.warmupSteps ?? Math.round((o.warmupEpochs ?? 2) * stepsPerEpoch);
  const sched = { peakLr, minLr: o.minLr ?? 0, totalSteps, warmupSteps };
  const ckptPath = o.checkpoint ?? `${stem(o.out)}.ckpt.safetensors`;
  const metricsPath = o.metrics === undefined ? `${stem(o.out)}.metrics.jsonl` : o.metrics;
  const plotPath = o.plot === undefined ? `${stem(o.out)}.loss.svg` : o.plot;

  const args: Record<string, unknown> = {
    data: dataName,
    records: records.length,
    prompt_style: style,
    val_size: valSize,
    max_seq_len: maxSeqLen,
    batch_size: batchSize,
    grad_accum: accum,
    epochs,
    max_steps: o.maxSteps ?? null,
    peak_lr: peakLr,
    min_lr: sched.minLr,
    weight_decay: o.weightDecay ?? 0.02,
    warmup_steps: warmupSteps,
    clip_grad: o.clipGrad ?? null,
    seed,
    gate_init: o.gateInit ?? 'zero',
  };
  if (enc) args.image_encoder = enc.identity;

  let adapter: TrainedAdapter;
  let pos: Position = { step: 0, epoch: 0, micro: 0 };
  let opt: AdamW;
  const history: { step: number; loss: number }[] = [];
  if (o.resume) {
    const r = readTrainingCheckpoint(o.resume, model, args, { microPerEpoch, accum, epochs, totalSteps }, enc?.identity ?? null);
    adapter = r.adapter;
    pos = r.pos;
    opt = new AdamW(trainableTensors(adapter), shapes(adapter), adamwOptions(o));
    opt.step = pos.step;
    for (const [k, m] of opt.m) m.set(r.m.get(k)!);
    for (const [k, v] of opt.v) v.set(r.v.get(k)!);
    history.push(...r.history);
    if (metricsPath) truncateMetrics(metricsPath, pos);
  } else {
    check(
      o.overwrite || !fs.existsSync(ckptPath),
      `${ckptPath}: a training checkpoint is already there; continue it with --resume ${ckptPath}, or pass --overwrite to start again and replace it`,
    );
    if (o.adapter) model.checkOwn(o.adapter);
    const init = { promptLength: o.promptLength, adapterLayers: o.adapterLayers, gate: o.gate, seed, gateInit: o.gateInit };
    adapter = o.adapter ?? (enc ? createMultimodalAdapter(model, { ...init, encoder: enc.identity }) : createAdapter(model, init));
    if (enc) {
      check(adapter instanceof MultimodalAdapter, 'training with an image encoder needs a multimodal adapter');
      adapter.checkEncoder(enc.identity, 'finetune');
      adapter.meta.image_encoder_path = enc.path;
    } else check(!(adapter instanceof MultimodalAdapter), 'a multimodal adapter trains with its image encoder (--image-encoder)');
    opt = new AdamW(trainableTensors(adapter), shapes(adapter), adamwOptions(o));
    if (metricsPath) fs.writeFileSync(metricsPath, '');
  }
  adapter.meta.training_args = JSON.stringify(args);

  const bufs = stepBuffers(adapter);
  const losses: number[] = [];
  const valLosses: EpochReport[] = [];
  const t0 = Date.now();
  let tokensSeen = 0;
  let aborted = false;
  const startStep = pos.step;
  const log = (obj: Record<string, unknown>): void => {
    if (metricsPath) fs.appendFileSync(metricsPath, `${JSON.stringify(obj)}\n`);
  };
  const save = async (): Promise<void> => {
    await model.backend.memory.sync(...opt.m.values(), ...opt.v.values()); // the moments, where a device updated them
    writeTrainingCheckpoint(ckptPath, adapter, opt, pos, args, history);
  };

  outer: while (pos.step < totalSteps) {
    const order = epochOrder(train.length, seed, pos.epoch);
    while (pos.micro < microPerEpoch && pos.step < totalSteps) {
      // ---- one optimizer step: up to `accum` micro-batches
      const nMicro = Math.min(accum, microPerEpoch - pos.micro);
      const batches: MicroBatch[] = [];
      for (let i = 0; i < nMicro; i++) {
        const idx = order.slice((pos.micro + i) * batchSize, (pos.micro + i + 1) * batchSize);
        const batch = padBatch(
          idx.map((j) => train[j]),
          tok.eosId,
        );
        const sources = rowSources(
          adapter,
          idx.map((j) => trainFeats[j]),
        );
        batches.push({ tokens: batch.tokens, targets: batch.targets, sources });
        tokensSeen += idx.reduce((s, j) => s + train[j].tokens.length, 0);
      }
      const lr = learningRate(sched, pos.step);
      // refuse before the update touches the adapter: the checkpoint on disk stays the last good state
      const { loss, norm } = await optimizerStep(model, adapter, opt, batches, lr, o.clipGrad, bufs, (l, n) => {
        throw new LlamaAdapterError(
          `training diverged at step ${pos.step + 1} (loss ${l}, gradient norm ${n}); nothing of that step was applied or saved, ` +
            `the last good checkpoint is ${fs.existsSync(ckptPath) ? ckptPath : '(none written yet)'} (try a lower --lr or --clip-grad)`,
        );
      });
      pos.micro += nMicro;
      pos.step++;
      losses.push(loss);
      history.push({ step: pos.step, loss });
      const el = (Date.now() - t0) / 1000;
      const tps = tokensSeen / Math.max(el, 1e-9);
      const etaS = ((totalSteps - pos.step) * el) / Math.max(1, pos.step - startStep);
      const epochF = pos.epoch + pos.micro / microPerEpoch;
      log({ step: pos.step, epoch: +epochF.toFixed(4), loss, lr, grad_norm: norm, tokens_per_s: tps, elapsed_s: el });
      o.onProgress?.({ step: pos.step, totalSteps, epoch: epochF, loss, lr, tokensPerS: tps, etaS, gradNorm: norm });
      if (o.checkpointEvery && pos.step % o.checkpointEvery === 0) await save();
      // let signals, timers and an AbortController reach us between steps
      await new Promise<void>((resolve) => setImmediate(resolve));
      if (o.signal?.aborted) {
        aborted = true;
        break outer;
      }
    }
    if (pos.micro >= microPerEpoch) {
      // ---- end of epoch: validate, checkpoint
      pos = { step: pos.step, epoch: pos.epoch + 1, micro: 0 };
      const valLoss = val.length ? await evaluate(model, adapter, val, batchSize, tok.eosId, valFeats) : null;
      const rep = { epoch: pos.epoch, valLoss };
      valLosses.push(rep);
      log({ epoch: pos.epoch, step: pos.step, val_loss: valLoss });
      o.onEpoch?.(rep);
      await save();
    }
  }
  await save();
  if (adapter instanceof MultimodalAdapter) saveMultimodalAdapter(adapter, o.out);
  else saveAdapter(adapter, o.out);
  if (plotPath)
    writeLossPlot(
      plotPath,
      history,
      valLosses.filter((v) => v.valLoss !== null).map((v) => ({ step: v.epoch * stepsPerEpoch, loss: v.valLoss! })),
    );
  const trainTokens = train.reduce((s, e) => s + e.tokens.length, 0);
  return { adapter, steps: pos.step, losses, valLosses, aborted, checkpoint: ckptPath, trainTokens };
}

/** Each row's prompt source: its image's for a multimodal adapter (this adapter alone for rows without one). */
function rowSources(a: TrainedAdapter, feats: readonly (Float32Array | null)[]): PromptSource[] {
  return a instanceof MultimodalAdapter ? a.rowSources(feats) : feats.map(() => a);
}

/** Token-weighted mean validation loss (feats: each example's image features, for a multimodal adapter). */
export async function evaluate(
  model: LlamaModel,
  adapter: TrainedAdapter | null,
  ex: readonly Example[],
  batchSize: number,
  padId: number,
  feats: readonly (Float32Array | null)[] = [],
): Promise<number> {
  let sum = 0,
    n = 0;
  for (let i = 0; i < ex.length; i += batchSize) {
    const b = padBatch(ex.slice(i, i + batchSize), padId);
    const f = ex.slice(i, i + batchSize).map((_, k) => feats[i + k] ?? null);
    const r = await model.lossAsync(b.tokens, b.targets, adapter ? rowSources(adapter, f) : null);
    sum += r.loss * r.tokens;
    n += r.tokens;
  }
  return n ? sum / n : 0;
}

/** The data order of an epoch: a shuffle seeded by (seed, epoch), so resuming needs no RNG state. */
function epochOrder(n: number, seed: number, epoch: number): number[] {
  return new Rng((seed * 1000003 + epoch * 7919 + 1) >>> 0).shuffle(Array.from({ length: n }, (_, i) => i));
}

function shapes(a: TrainedAdapter): Map<string, number[]> {
  return new Map([...trainableTensors(a).keys()].map((k) => [k, a.shapeOf(k)]));
}

function adamwOptions(o: FinetuneOptions): { beta1: number; beta2: number; eps: number; weightDecay: number } {
  return { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: o.weightDecay ?? 0.02 };
}
