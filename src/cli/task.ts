// `llama-adapter task train | eval`: prompt methods with a task head on a frozen ViT, RoBERTa or
// LLaMA checkpoint (methods/prompts): image classification (a folder per class or JSONL of image +
// label), text classification (JSONL of text + label) and extractive QA (SQuAD JSON, scored with the
// official exact match / F1). `--method gated` = zero-init gated adaption prompts (LLaMA-Adapter),
// `vpt` = the plain deep-prompt baseline, `probe` = the head alone.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command, Option } from 'commander';
import { getBackend } from '../backend/index.js';
import { atFile, check } from '../core/errors.js';
import { baseShape, loadTaskMethod, saveTaskMethod } from '../methods/prompts/file.js';
import { readAdapterInfo } from '../methods/v1/file.js';
import type { HeadKind } from '../methods/prompts/heads.js';
import { createTaskMethod, TASK_KINDS, type TaskKind } from '../methods/prompts/task.js';
import { encoderKind, loadEncoder } from '../model/encoders/load.js';
import { loadTokenizer } from '../tokenizer/load.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { type TaskModel, taskBackbone, taskData } from '../train/tasks/pipeline.js';
import { trainTask } from '../train/tasks/train.js';
import { int, type ModelFlags, modelOptions, num, openModel } from './common.js';

interface TaskFlags extends ModelFlags {
  data: string;
  imageDir?: string;
  labels?: string;
  maxLength?: number;
  stride: number;
  json?: boolean;
}

/** A ViT / RoBERTa directory (with the tokenizer beside a RoBERTa, if any), or a LLaMA model. */
async function openTaskModel(f: ModelFlags): Promise<{ model: TaskModel; tokenizer?: Tokenizer }> {
  if (!encoderKind(f.model)) {
    const m = await openModel(f);
    return { model: m, tokenizer: m.tokenizer };
  }
  check(f.dtype === 'f32', 'ViT and RoBERTa run in f32 (--dtype f32)');
  const model = loadEncoder(f.model, getBackend(f.backend, f.threads));
  const tokPath = f.tokenizer ?? path.join(f.model, 'tokenizer.json');
  return { model, tokenizer: model.kind === 'roberta' && fs.existsSync(tokPath) ? await loadTokenizer(tokPath) : undefined };
}

function dataOptions(cmd: Command): Command {
  return cmd
    .requiredOption('-d, --data <path>', 'data: a folder per class or JSONL {"image","label"} (images), JSONL {"text","label"} (text), SQuAD JSON (QA)')
    .option('--image-dir <dir>', "base of relative image paths in JSONL (default: the file's folder)")
    .option('--labels <list>', "the label set, comma-separated, in id order (default: the training data's labels, sorted)")
    .option('--max-length <n>', "tokens per row (default 256; QA 384; at most the model's)", int('--max-length', 8))
    .option('--stride <n>', 'QA: context tokens between windows', int('--stride', 1), 128)
    .option('--json', 'print the result as one JSON object');
}

interface TrainFlags extends TaskFlags {
  task: TaskKind;
  out: string;
  eval?: string;
  method: 'gated' | 'vpt' | 'probe';
  gate: 'tanh' | 'raw';
  gateInit: 'zero' | 'random';
  promptLength: number;
  adapterLayers?: number;
  head?: HeadKind;
  headFromCheckpoint?: boolean;
  epochs: number;
  batchSize: number;
  lr: number;
  weightDecay: number;
  maxSteps?: number;
  seed: number;
}

function trainCommand(): Command {
  const cmd = new Command('train').description('train prompts (or a probe) and a task head on a frozen ViT, RoBERTa or LLaMA model');
  return dataOptions(modelOptions(cmd))
    .addOption(new Option('--task <task>', 'the task').choices([...TASK_KINDS]).makeOptionMandatory())
    .requiredOption('-o, --out <file>', 'adapter file to write (.safetensors)')
    .option('--eval <path>', 'evaluation data (same format), scored after training')
    .addOption(
      new Option('--method <m>', 'gated: zero-init gated prompts; vpt: plain deep prompts (one softmax, no gate); probe: the head alone')
        .choices(['gated', 'vpt', 'probe'])
        .default('gated'),
    )
    .addOption(new Option('--gate <g>', 'gated: tanh(g) or the raw gate per head').choices(['tanh', 'raw']).default('tanh'))
    .addOption(new Option('--gate-init <i>', 'gated: zero (the method) or random N(0, 1) (the ablation)').choices(['zero', 'random']).default('zero'))
    .option('--prompt-length <n>', 'K prompts per adapted layer', int('--prompt-length', 1), 10)
    .option('--adapter-layers <n>', 'L adapted layers, the top L (default: all)', int('--adapter-layers', 1))
    .addOption(
      new Option('--head <kind>', "classification head (default: RoBERTa's dense + tanh + out_proj for RoBERTa text, a Linear otherwise)").choices([
        'linear',
        'roberta-classifier',
      ]),
    )
    .option('--head-from-checkpoint', "start the head from the checkpoint's own (its classifier / qa_outputs, same shape)")
    .option('--epochs <n>', 'epochs', int('--epochs', 1), 3)
    .option('--batch-size <n>', 'rows per step', int('--batch-size', 1), 16)
    .option('--lr <lr>', 'peak learning rate (warmup a tenth of the steps, then cosine)', num('--lr', 0), 1e-3)
    .option('--weight-decay <wd>', 'AdamW decay on matrices (prompts, head weights)', num('--weight-decay', 0), 0.01)
    .option('--max-steps <n>', 'stop after n optimizer steps', int('--max-steps', 1))
    .option('--seed <n>', 'initialisation and shuffling', int('--seed', 0), 0)
    .action(async (f: TrainFlags) => {
      const { model, tokenizer } = await openTaskModel(f);
      const bb = taskBackbone(model, f.task);
      const opts = { labels: f.labels?.split(','), imageDir: f.imageDir, tokenizer, maxLength: f.maxLength, stride: f.stride };
      const train = taskData(bb, model, f.task, f.data, opts);
      const evalData = f.eval ? taskData(bb, model, f.task, f.eval, { ...opts, labels: train.labels }) : null;
      const N = bb.view.attnShape.layers;
      const headFrom = f.headFromCheckpoint ? checkpointHead(model) : undefined;
      const m = createTaskMethod(bb, {
        task: f.task,
        labels: train.labels,
        prompts:
          f.method === 'probe'
            ? null
            : { mode: f.method === 'vpt' ? 'vpt' : f.gate, promptLength: f.promptLength, adapterLayers: f.adapterLayers ?? N, gateInit: f.gateInit },
        head: f.head,
        seed: f.seed,
        headFrom,
      });
      m.meta.training_args = JSON.stringify({
        task: f.task,
        data: f.data,
        method: f.method,
        gate: f.gate,
        gate_init: f.gateInit,
        epochs: f.epochs,
        batch_size: f.batchSize,
        lr: f.lr,
        weight_decay: f.weightDecay,
        max_steps: f.maxSteps ?? null,
        seed: f.seed,
      });
      process.stderr.write(`${baseShape(bb)}: ${f.method} on ${train.dataset.size} ${f.task} rows, ${m.parameterCount} trainable parameters\n`);
      const r = trainTask(bb, m, train.dataset, {
        epochs: f.epochs,
        batchSize: f.batchSize,
        lr: f.lr,
        weightDecay: f.weightDecay,
        maxSteps: f.maxSteps,
        seed: f.seed,
        onStep: (s) => {
          if (s.step % 10 === 0 || s.step === s.totalSteps)
            process.stderr.write(`step ${s.step}/${s.totalSteps} epoch ${s.epoch} loss ${s.loss.toFixed(4)} lr ${s.lr.toExponential(2)}\n`);
        },
      });
      saveTaskMethod(m, bb, f.out);
      const metrics = evalData ? evalData.evaluate(m).metrics : null;
      const res = { out: f.out, steps: r.steps, seconds: r.seconds, final_loss: r.losses.at(-1), parameters: m.parameterCount, eval: metrics };
      process.stdout.write(
        f.json
          ? `${JSON.stringify(res)}\n`
          : `wrote ${f.out} (${r.steps} steps, ${r.seconds.toFixed(1)} s)${metrics ? `; eval ${JSON.stringify(metrics)}` : ''}\n`,
      );
    });
}

/** The checkpoint's own head as task-head tensors (HF names). */
function checkpointHead(model: TaskModel): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  const put = (name: string, h: { w: { data: unknown }; b: Float32Array } | null): void => {
    if (!h) return;
    out.set(`${name}.weight`, h.w.data as Float32Array);
    out.set(`${name}.bias`, h.b);
  };
  if ('kind' in model && model.kind === 'vit') put('classifier', model.classifier);
  if ('kind' in model && model.kind === 'roberta') {
    put('qa_outputs', model.qaOutputs);
    put('classifier.dense', model.classifier?.dense ?? null);
    put('classifier.out_proj', model.classifier?.outProj ?? null);
  }
  check(out.size > 0, '--head-from-checkpoint: the checkpoint has no task head');
  return out;
}

interface EvalFlags extends TaskFlags {
  adapter: string;
  force?: boolean;
  predictions?: string;
}

function evalCommand(): Command {
  const cmd = new Command('eval').description('score a task adapter (accuracy, or SQuAD exact match / F1)');
  return dataOptions(modelOptions(cmd))
    .requiredOption('-a, --adapter <file>', 'task adapter written by `task train`')
    .option('--force', 'load onto other weights of the same shape')
    .option('--predictions <file>', 'write the predictions (JSON)')
    .action(async (f: EvalFlags) => {
      const { model, tokenizer } = await openTaskModel(f);
      const task = readTask(f.adapter);
      const bb = taskBackbone(model, task);
      const m = loadTaskMethod(f.adapter, bb, { force: f.force });
      const data = taskData(bb, model, task, f.data, { labels: m.labels, imageDir: f.imageDir, tokenizer, maxLength: f.maxLength, stride: f.stride });
      const { metrics, predictions } = data.evaluate(m);
      if (f.predictions) fs.writeFileSync(f.predictions, JSON.stringify(predictions, null, 1));
      process.stdout.write(
        f.json
          ? `${JSON.stringify(metrics)}\n`
          : `${Object.entries(metrics)
              .map(([k, v]) => `${k} ${Number.isInteger(v) ? v : v.toFixed(4)}`)
              .join('  ')}\n`,
      );
    });
}

/** The task a task adapter file names (its metadata; the loader checks the rest). */
function readTask(file: string): TaskKind {
  const md = atFile(file, () => readAdapterInfo(file).metadata);
  check(TASK_KINDS.includes(md.task as TaskKind), `${file}: not a task adapter (no known "task" in its metadata)`);
  return md.task as TaskKind;
}

export function taskCommand(): Command {
  return new Command('task')
    .description('prompt methods with a task head on ViT, RoBERTa or LLaMA (image / text classification, extractive QA)')
    .addCommand(trainCommand())
    .addCommand(evalCommand());
}
