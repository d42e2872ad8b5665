// `llama-adapter finetune`: train an adapter on instruction data, with a progress bar; writes
// the adapter, a checkpoint, a metrics JSONL and a loss-curve SVG. Ctrl-C finishes the current
// step, writes adapter and checkpoint and exits 130 (resume with --resume); a second one quits now.

import { Command, Option } from 'commander';
import cliProgress from 'cli-progress';
import { GATE_RULES, type GateMode } from '../methods/v1/gate.js';
import { finetune } from '../train/finetune.js';
import { check } from '../core/errors.js';
import { PROMPT_STYLES, type PromptStyleName } from '../train/prompt-styles.js';
import {
  adapterOptions,
  imageOptions,
  inRange,
  int,
  modelOptions,
  num,
  openAnyAdapter,
  openModel,
  type AdapterFlags,
  type ImageFlags,
  type ModelFlags,
} from './common.js';
import { loadImageEncoder } from '../vision/encoder.js';

interface FinetuneFlags extends ModelFlags, AdapterFlags, ImageFlags {
  imageDir?: string;
  featureCache?: string;
  data: string;
  out: string;
  promptLength: number;
  adapterLayers: number;
  gate: GateMode;
  gateInit: 'zero' | 'random';
  epochs: number;
  maxSteps?: number;
  batchSize: number;
  gradAccum: number;
  lr?: number;
  blr: number;
  weightDecay: number;
  warmupEpochs: number;
  warmupSteps?: number;
  clipGrad?: number;
  maxSeqLen: number;
  valSize: number;
  promptStyle: PromptStyleName;
  seed: number;
  resume?: string;
  resumeFromAdapter?: string;
  checkpointEvery?: number;
  overwrite?: boolean;
  progress: boolean;
}

function fmtTime(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const m = Math.floor(s / 60);
  return m ? `${m}m${Math.round(s % 60)}s` : `${Math.round(s)}s`;
}

export function finetuneCommand(): Command {
  const cmd = new Command('finetune').description('train a LLaMA-Adapter on instruction data (Alpaca JSON/JSONL, Dolly)');
  imageOptions(adapterOptions(modelOptions(cmd)))
    .requiredOption('-d, --data <file>', 'instruction data: JSON array or JSONL (instruction/input/output or Dolly fields)')
    .requiredOption('-o, --out <adapter.safetensors>', 'adapter file to write')
    .option('--prompt-length <K>', 'adaption prompt length', int('--prompt-length', 1), 10)
    .option('--adapter-layers <L>', 'adapt the top L layers (default: 30 or all the model has)', int('--adapter-layers', 1), 30)
    .addOption(new Option('--gate <convention>', 'gate convention').choices(Object.keys(GATE_RULES)).default('tanh-per-head'))
    .addOption(new Option('--gate-init <init>', "zero (the method) or random (the paper's ablation)").choices(['zero', 'random']).default('zero'))
    .option('--epochs <n>', 'epochs', int('--epochs', 1), 5)
    .option('--max-steps <n>', 'stop after n optimizer steps (also shortens the schedule)', int('--max-steps', 1))
    .option('--batch-size <n>', 'micro-batch size', int('--batch-size', 1), 4)
    .option('--grad-accum <n>', 'micro-batches per optimizer step', int('--grad-accum', 1), 1)
    .option('--lr <lr>', 'absolute peak learning rate (overrides --blr)', inRange('--lr', 0, 1))
    .option('--blr <blr>', 'base lr: peak = blr x batch x accum / 256', num('--blr', 0), 9e-3)
    .option('--weight-decay <wd>', 'decoupled weight decay on prompts (not gates)', num('--weight-decay', 0), 0.02)
    .option('--warmup-epochs <n>', 'linear warmup in epochs', num('--warmup-epochs', 0), 2)
    .option('--warmup-steps <n>', 'linear warmup in optimizer steps (overrides --warmup-epochs)', int('--warmup-steps', 0))
    .option('--clip-grad <norm>', 'clip the global gradient norm', num('--clip-grad', 0))
    .option('--max-seq-len <n>', 'truncate examples to n tokens', int('--max-seq-len', 2), 512)
    .option('--val-size <n>', 'first n records are the validation split', int('--val-size', 0), 200)
    .addOption(new Option('--prompt-style <style>', 'prompt template').choices(Object.keys(PROMPT_STYLES)).default('alpaca'))
    .option('--seed <n>', 'seed for init and data order', int('--seed', 0), 0)
    .option('--resume <ckpt>', 'continue exactly from a training checkpoint')
    .option(
      '--resume-from-adapter <path>',
      'keep training this adapter (any readable format: llama-adapter, PEFT directory, official .pth, litgpt); its K, layers and gate are its own',
    )
    .option('--checkpoint-every <n>', 'also checkpoint every n optimizer steps', int('--checkpoint-every', 1))
    .option('--overwrite', 'start afresh even where --out already has a training checkpoint (replacing it)')
    .option('--no-progress', 'no progress bar (log lines instead)')
    .option('--image-dir <dir>', "multimodal: where records' relative image paths resolve (default: the data file's folder)")
    .option('--feature-cache <dir>', 'multimodal: keep computed image features here (keyed by image content and encoder)')
    .action(async (f: FinetuneFlags, self: Command) => {
      check(!(f.resume && f.resumeFromAdapter), '--resume (a training checkpoint) and --resume-from-adapter (an adapter to train further) exclude each other');
      if (f.resumeFromAdapter) {
        for (const [flag, key] of [
          ['--prompt-length', 'promptLength'],
          ['--adapter-layers', 'adapterLayers'],
          ['--gate', 'gate'],
          ['--gate-init', 'gateInit'],
        ] as const) {
          check(self.getOptionValueSource(key) !== 'cli', `${flag} cannot be given with --resume-from-adapter (the adapter's own is used)`);
        }
      }
      const model = await openModel(f);
      const opened = f.resumeFromAdapter ? await openAnyAdapter(f.resumeFromAdapter, model, f) : null;
      const adapter = opened?.adapter;
      const imageEncoder =
        opened?.encoder ?? (f.imageEncoder ? await loadImageEncoder(f.imageEncoder, { backend: model.backend, layers: f.featureLayers }) : undefined);
      // the default (30, the paper's) is clamped to the model; an explicit value is not
      check(
        self.getOptionValueSource('adapterLayers') !== 'cli' || f.adapterLayers <= model.config.nLayers,
        `--adapter-layers ${f.adapterLayers}: the model has only ${model.config.nLayers} layers`,
      );
      // The first Ctrl-C is seen between steps (the loop yields after each); it asks the loop to
      // stop and removes this listener, so a second Ctrl-C gets Node's default action and ends the
      // process at once, even inside a step (files are written temp + rename: nothing is corrupted).
      const ac = new AbortController();
      const onSig = (): void => {
        process.off('SIGINT', onSig);
        process.stderr.write('\ninterrupted: finishing this step and writing the adapter and checkpoint (Ctrl-C again to quit now)\n');
        ac.abort();
      };
      process.on('SIGINT', onSig);
      const tty = f.progress && process.stderr.isTTY;
      const bar = new cliProgress.SingleBar(
        {
          format: 'train |{bar}| {value}/{total} steps | epoch {epoch} | loss {loss} | lr {lr} | {tps} tok/s | ETA {eta_h}',
          hideCursor: true,
        },
        cliProgress.Presets.shades_classic,
      );
      let started = false;
      const r = await finetune({
        model,
        adapter,
        imageEncoder,
        imageDir: f.imageDir,
        featureCache: f.featureCache,
        data: f.data,
        out: f.out,
        promptLength: f.promptLength,
        adapterLayers: Math.min(f.adapterLayers, model.config.nLayers),
        gate: f.gate,
        gateInit: f.gateInit,
        epochs: f.epochs,
        maxSteps: f.maxSteps,
        batchSize: f.batchSize,
        gradAccum: f.gradAccum,
        lr: f.lr,
        blr: f.blr,
        weightDecay: f.weightDecay,
        warmupEpochs: f.warmupEpochs,
        warmupSteps: f.warmupSteps,
        clipGrad: f.clipGrad,
        maxSeqLen: f.maxSeqLen,
        valSize: f.valSize,
        promptStyle: f.promptStyle,
        seed: f.seed,
        resume: f.resume,
        checkpointEvery: f.checkpointEvery,
        overwrite: f.overwrite,
        signal: ac.signal,
        onProgress: (p) => {
          const payload = {
            epoch: p.epoch.toFixed(2),
            loss: p.loss.toFixed(4),
            lr: p.lr.toExponential(2),
            tps: Math.round(p.tokensPerS),
            eta_h: fmtTime(p.etaS),
          };
          if (tty) {
            if (!started) bar.start(p.totalSteps, 0, payload);
            started = true;
            bar.update(p.step, payload);
          } else if (p.step % 10 === 0 || p.step === p.totalSteps) {
            process.stderr.write(
              `step ${p.step}/${p.totalSteps} epoch ${payload.epoch} loss ${payload.loss} lr ${payload.lr} ${payload.tps} tok/s ETA ${payload.eta_h}\n`,
            );
          }
        },
        onEpoch: (e) => {
          const line = `epoch ${e.epoch}: validation loss ${e.valLoss === null ? 'n/a' : e.valLoss.toFixed(4)}`;
          if (tty && started) bar.updateETA();
          process.stderr.write(`${tty && started ? '\n' : ''}${line}\n`);
        },
      });
      if (started) bar.stop();
      process.off('SIGINT', onSig);
      process.stderr.write(`${r.aborted ? 'stopped' : 'done'} after ${r.steps} steps; adapter ${f.out}, checkpoint ${r.checkpoint}\n`);
      if (r.aborted) {
        process.stderr.write(`to continue: run the same finetune command with --resume ${r.checkpoint}\n`);
        process.exitCode = 130;
      }
    });
  return cmd;
}
