// What the task commands (cli/task.ts) and the section-5 comparison put together for a (model, task,
// data file): the backbone (ViT: image classification; RoBERTa: text classification or extractive
// QA; LLaMA: text classification), the dataset the loop batches, and the evaluation (accuracy, or the
// official SQuAD scores). Images go through the multimodal issue's preprocessing (shorter side to the
// model's input size with PIL's bicubic, centre crop) with the checkpoint's preprocessor_config.json
// mean / std (ViTImageProcessor's 0.5 / 0.5 without one).

import * as fs from 'node:fs';
import * as path from 'node:path';
import { check, LlamaAdapterError } from '../../core/errors.js';
import { type Backbone, LlamaBackbone, RobertaBackbone, VitBackbone } from '../../methods/prompts/backbones.js';
import type { TaskKind, TaskMethod } from '../../methods/prompts/task.js';
import type { EncoderModel } from '../../model/encoders/load.js';
import type { LlamaModel } from '../../model/model.js';
import type { Tokenizer } from '../../tokenizer/tokenizer.js';
import type { PreprocessConfig } from '../../vision/preprocess.js';
import { imageDataset, llamaTextDataset, qaDataset, robertaTextDataset, type TaskDataset } from './batches.js';
import { labelIds, labelSet, readImageClassification, readTextClassification } from './data.js';
import { qaFeatures, readSquad } from './squad.js';
import { evaluateClassification, evaluateQa } from './train.js';

export type TaskModel = EncoderModel | LlamaModel;

/** The backbone of a model for a task (refusing pairs that do not fit). */
export function taskBackbone(model: TaskModel, task: TaskKind): Backbone<unknown> {
  if ('kind' in model && model.kind === 'vit') {
    check(task === 'image-classification', `a ViT model takes the image-classification task (not ${task})`);
    return new VitBackbone(model) as Backbone<unknown>;
  }
  if ('kind' in model && model.kind === 'roberta') {
    check(task !== 'image-classification', 'a RoBERTa model takes text-classification or question-answering');
    return new RobertaBackbone(model, task === 'question-answering' ? 'all' : 'first') as Backbone<unknown>;
  }
  check(task === 'text-classification', `a LLaMA model takes the text-classification task here (not ${task})`);
  return new LlamaBackbone(model as LlamaModel) as Backbone<unknown>;
}

/** The image preprocessing of a ViT directory. */
export function vitPreprocess(dir: string, size: number): PreprocessConfig {
  const file = path.join(dir, 'preprocessor_config.json');
  let mean: number[] = [0.5, 0.5, 0.5],
    std: number[] = [0.5, 0.5, 0.5];
  if (fs.existsSync(file)) {
    let j: Record<string, unknown>;
    try {
      j = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
    } catch (e) {
      throw new LlamaAdapterError(`${file}: not valid JSON (${(e as Error).message})`);
    }
    const triple = (v: unknown, k: string): number[] => {
      check(Array.isArray(v) && v.length === 3 && v.every((x) => typeof x === 'number' && Number.isFinite(x)), `${file}: "${k}" must be 3 numbers`);
      return v as number[];
    };
    if (j.image_mean !== undefined) mean = triple(j.image_mean, 'image_mean');
    if (j.image_std !== undefined) std = triple(j.image_std, 'image_std');
    check(
      std.every((s) => s > 0),
      `${file}: "image_std" must be positive`,
    );
  }
  return { size, mean, std, layout: 'chw', crop: 'hf' };
}

export interface TaskDataOptions {
  labels?: readonly string[]; // the label set (default: the data's own, sorted)
  imageDir?: string; // base of relative image paths in JSONL
  tokenizer?: Tokenizer; // text tasks (a LLaMA model brings its own)
  maxLength?: number; // tokens per row (default: 256 classification, 384 QA; at most the model's)
  stride?: number; // QA context windows (default 128)
}

export interface TaskData {
  dataset: TaskDataset<unknown>;
  labels: string[]; // classification: the label set in id order
  /** Accuracy (classification) or exact_match / f1 (QA), and the predictions. */
  evaluate(m: TaskMethod): { metrics: Record<string, number>; predictions: unknown };
}

/** The dataset and evaluation of a data file for a backbone. */
export function taskData(bb: Backbone<unknown>, model: TaskModel, task: TaskKind, file: string, o: TaskDataOptions = {}): TaskData {
  if (task === 'image-classification') {
    const vit = (bb as unknown as VitBackbone).host;
    const recs = readImageClassification(file, o.imageDir);
    const labels = labelSet(recs, o.labels);
    const ds = imageDataset(recs, labelIds(recs, labels), vitPreprocess(vit.path, vit.config.imageSize)) as TaskDataset<unknown>;
    return classification(bb, ds, labels);
  }
  const tok = o.tokenizer ?? ('tokenizer' in model ? model.tokenizer : undefined);
  check(tok, `${task} needs a tokenizer (tokenizer.json beside the model, or --tokenizer)`);
  if (bb.arch === 'llama') {
    const llama = model as LlamaModel;
    const recs = readTextClassification(file);
    const labels = labelSet(recs, o.labels);
    const max = Math.min(o.maxLength ?? 256, llama.config.maxSeqLen);
    return classification(bb, llamaTextDataset(recs, labelIds(recs, labels), tok, max, llama.config.eosId ?? 0) as TaskDataset<unknown>, labels);
  }
  const rob = (bb as unknown as RobertaBackbone).host;
  const sp = { bos: rob.config.bosId, eos: rob.config.eosId, pad: rob.config.padId };
  check(
    tok.vocabSize <= rob.config.vocabSize,
    `${tok.path}: the tokenizer has ${tok.vocabSize} tokens, more than the model's vocabulary of ${rob.config.vocabSize}`,
  );
  if (task === 'text-classification') {
    const recs = readTextClassification(file);
    const labels = labelSet(recs, o.labels);
    const max = Math.min(o.maxLength ?? 256, rob.maxTokens);
    return classification(bb, robertaTextDataset(recs, labelIds(recs, labels), tok, sp, max) as TaskDataset<unknown>, labels);
  }
  const examples = readSquad(file);
  const maxLength = Math.min(o.maxLength ?? 384, rob.maxTokens);
  const { features, words } = qaFeatures(examples, tok, sp, { maxLength, stride: o.stride ?? 128, maxQuestion: 64 });
  const ds = qaDataset(features, sp.pad);
  return {
    dataset: ds as TaskDataset<unknown>,
    labels: [],
    evaluate(m) {
      const r = evaluateQa(bb as Backbone<never>, m, examples, features, words, ds);
      return { metrics: { exact_match: r.exact_match, f1: r.f1, total: r.total }, predictions: Object.fromEntries(r.predictions) };
    },
  };
}

function classification(bb: Backbone<unknown>, ds: TaskDataset<unknown>, labels: string[]): TaskData {
  return {
    dataset: ds,
    labels,
    evaluate(m) {
      const r = evaluateClassification(bb, m, ds);
      return { metrics: { accuracy: r.accuracy, loss: r.loss, total: ds.size }, predictions: Array.from(r.predictions, (i) => m.labels[i]) };
    },
  };
}
