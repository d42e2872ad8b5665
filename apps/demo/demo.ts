// runDemo(): the README's main job end to end. The frozen base model writes stories; each is
// paired with an instruction it satisfies; (name, object) combinations are held out; an adapter
// is trained with zero-init gates (the method) and once more with random-init gates (the
// paper's ablation); then the base model and both adapters answer the held-out instructions and
// are scored. Writes the adapters, the instruction data, metrics, one loss chart and a report.

import * as fs from 'node:fs';
import * as path from 'node:path';
import * as os from 'node:os';
import type { Adapter } from '../../src/methods/v1/adapter.js';
import { loadAdapter } from '../../src/methods/v1/interop/registry.js';
import type { BackendName } from '../../src/backend/index.js';
import { check, LlamaAdapterError } from '../../src/core/errors.js';
import { loadModel } from '../../src/model/load.js';
import type { LlamaModel } from '../../src/model/model.js';
import { finetune } from '../../src/train/finetune.js';
import { writeSvgChart } from '../../src/train/plot.js';
import { tokenizeExample } from '../../src/train/data.js';
import { PROMPT_STYLES, type InstructionRecord } from '../../src/train/prompt-styles.js';
import {
  augmentSwaps,
  extractInstruction,
  SWAP_NAMES,
  SWAP_OBJECTS,
  instructionFor,
  splitHeldout,
  titleFor,
  type Combo,
  type StoryInstruction,
} from './instructions.js';
import { aggregate, generateVariants, scoreOne, type ScoredGeneration, type Scores } from './score.js';
import { sampleStories, trimStory, type SampledStory } from './stories.js';
import { runJob, type TrainJobOptions, type TrainJobResult } from './worker.js';
import { mkdirs, writeFileAtomic } from '../../src/core/fs.js';
import { packageRoot } from '../../src/core/package-root.js';

/** Everything the demo does, with the defaults of the full run. */
export interface DemoConfig {
  stories: number; // stories sampled from the base model
  storyMaxTokens: number; // tokens sampled per story
  storyMaxChars: number; // stories are cut to their first whole sentences within this many characters
  storyTemperature: number;
  storyTopP: number;
  swaps: number; // name/object-swapped copies per story (0 = the stories as written)
  heldoutCombos: number; // (name, object) combinations held out
  minCount: number; // a name/object must lead this many stories to be held-out material
  samplesPerCombo: number; // evaluation generations per held-out combination (different seeds)
  promptLength: number; // K
  layers: number; // L (clamped to the model's layer count)
  lr: number; // peak learning rate
  epochs: number;
  batchSize: number;
  warmupSteps: number;
  maxValRecords: number; // validation records (stories of held-out combinations) at most
  evalTemperature: number;
  evalTopP: number;
  evalMaxTokens: number;
  seed: number;
}

export const FULL_CONFIG: DemoConfig = {
  stories: 2048,
  storyMaxTokens: 48,
  storyMaxChars: 110,
  storyTemperature: 1.0,
  storyTopP: 0.95,
  swaps: 8,
  heldoutCombos: 64,
  minCount: 3,
  samplesPerCombo: 4,
  promptLength: 20,
  layers: 2,
  lr: 3e-2,
  epochs: 10,
  batchSize: 4,
  warmupSteps: 10,
  maxValRecords: 48,
  evalTemperature: 0.3,
  evalTopP: 0.75,
  evalMaxTokens: 100,
  seed: 0,
};

/** A tiny configuration for tests: seconds on the TypeScript backend, too small to prove anything. */
export const QUICK_CONFIG: DemoConfig = {
  ...FULL_CONFIG,
  stories: 64,
  swaps: 2,
  heldoutCombos: 4,
  minCount: 1,
  samplesPerCombo: 1,
  epochs: 2,
  warmupSteps: 2,
  maxValRecords: 4,
  evalMaxTokens: 32,
};

export interface DemoOptions extends Partial<DemoConfig> {
  model?: LlamaModel; // an already loaded base model, or:
  modelPath?: string; // default: the repository's ../shared/assets/models/tinystories-656k
  backend?: BackendName;
  outDir?: string; // default ./demo-out
  quick?: boolean; // start from QUICK_CONFIG instead of FULL_CONFIG
  /** Sample and train in two worker threads, each loading the model from its path (default: with >= 2 cores, unless `model` is given). */
  parallel?: boolean;
  onLog?: (line: string) => void; // progress lines
}

export interface RunSummary {
  label: string; // 'zero-init gates' | 'random-init gates'
  gateInit: 'zero' | 'random';
  adapter: string; // file written
  steps: number;
  firstLoss: number;
  finalLoss: number; // last step
  finalLossMean: number; // mean of the last 10% of steps (per-step loss is noisy)
  losses: number[]; // per step
  valLosses: (number | null)[]; // per epoch
  seconds: number;
}

export interface ExampleGeneration {
  instruction: string;
  base: string;
  zeroInit: string;
  randomInit: string;
}

export interface DemoReport {
  model: string;
  backend: string;
  parallel: boolean;
  config: DemoConfig;
  layers: number; // adapted layers (config.layers clamped to the model)
  data: {
    sampled: number; // stories sampled
    usable: number; // stories (cut to their first sentences) with a known name and object
    augmented: number; // records after name/object swaps
    train: number; // training records
    val: number; // validation records (stories whose own instruction is a held-out combination)
    droppedForHeldout: number; // records kept out of training because they mention a held-out pair in passing
    heldoutCombos: Combo[];
    names: number; // distinct names in training instructions
    objects: number; // distinct objects in training instructions
  };
  baseValLoss: number | null; // the base model's loss on the validation records
  training: { zeroInit: RunSummary; randomInit: RunSummary };
  /** base: the base model given the instruction; baseTitle: the base model given a story title
   *  ("A story about Lily and a ball."), a prompt it handles better (reference only). */
  scores: { base: Scores; baseTitle: Scores; zeroInit: Scores; randomInit: Scores };
  evaluation: { prompts: number; temperature: number; topP: number; maxTokens: number; seeds: string };
  examples: ExampleGeneration[];
  timings: { loadS: number; storiesS: number; trainS: number; evalS: number; totalS: number };
  files: Record<string, string>;
}

/** The default base model: tinystories-656k in ../shared/assets/models, relative to the repository root. */
export function defaultModelPath(): string {
  const root = packageRoot();
  if (!root) throw new LlamaAdapterError('cannot find the llama-adapter repository root to locate the default model: pass --model PATH');
  return path.resolve(root, '../shared/assets/models/tinystories-656k');
}

function writeJsonl(file: string, rows: readonly object[]): void {
  fs.writeFileSync(file, rows.map((r) => JSON.stringify(r)).join('\n') + (rows.length ? '\n' : ''));
}

const toRecord = (it: StoryInstruction): InstructionRecord => ({ instruction: it.instruction, input: '', output: it.story });
const seconds = (from: number, to = Date.now()): number => (to - from) / 1000;

/** Resolve the configuration: quick or full defaults, overridden by the options given. */
export function demoConfig(o: DemoOptions = {}): DemoConfig {
  const base = o.quick ? QUICK_CONFIG : FULL_CONFIG;
  const cfg: DemoConfig = { ...base };
  for (const k of Object.keys(base) as (keyof DemoConfig)[]) if (o[k] !== undefined) cfg[k] = o[k] as number;
  for (const [k, v] of Object.entries(cfg)) check(Number.isFinite(v) && v >= 0, `demo: ${k} must be a non-negative number (got ${v})`);
  check(Number.isInteger(cfg.stories) && cfg.stories >= 8, `demo: the number of stories must be an integer >= 8 (got ${cfg.stories})`);
  check(cfg.samplesPerCombo >= 1 && cfg.heldoutCombos >= 1, 'demo: need at least one held-out combination and one sample per combination');
  check(cfg.batchSize >= 1 && cfg.epochs >= 1, 'demo: batch size and epochs must be >= 1');
  return cfg;
}

/** Run the whole demo; returns the report (also written as report.json and report.md). */
export async function runDemo(o: DemoOptions = {}): Promise<DemoReport> {
  const t0 = Date.now();
  const log = o.onLog ?? ((): void => undefined);
  const cfg = demoConfig(o);
  const modelPath = o.model ? o.model.info.path : (o.modelPath ?? defaultModelPath());
  if (!o.model && !fs.existsSync(modelPath)) throw new LlamaAdapterError(`${modelPath}: model not found (pass --model PATH)`);
  const outDir = path.resolve(o.outDir ?? 'demo-out');
  try {
    mkdirs(path.join(outDir, 'adapters'));
    mkdirs(path.join(outDir, 'data'));
  } catch (e) {
    throw new LlamaAdapterError(`${outDir}: cannot create the output directory (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
  }
  const files: Record<string, string> = {};
  const file = (key: string, rel: string): string => (files[key] = path.join(outDir, rel));

  // ---- the base model
  const model = o.model ?? (await loadModel(modelPath, { backend: o.backend ?? 'auto' }));
  const layers = Math.min(cfg.layers, model.config.nLayers);
  // workers load their own copy from modelPath: by default only when runDemo loaded the model itself
  const parallel = o.parallel ?? (!o.model && os.availableParallelism() >= 2);
  const workerBackend = model.backend.name;
  // two jobs at once: each native worker computes on half the cores
  const workerThreads = workerBackend === 'native' ? Math.max(1, Math.floor(os.availableParallelism() / 2)) : undefined;
  const tLoad = Date.now();
  log(`model ${modelPath}: ${model.config.nLayers} layers, dim ${model.config.dim}, ${model.backend.name} backend${parallel ? ', 2 worker threads' : ''}`);

  // ---- 1. stories from the base model (row r samples with storySeed + r, however it is split)
  const storySeed = cfg.seed * 100003 + 1;
  const sampleOpts = { maxTokens: cfg.storyMaxTokens, temperature: cfg.storyTemperature, topP: cfg.storyTopP };
  let sampled: SampledStory[];
  if (parallel) {
    const half = Math.ceil(cfg.stories / 2);
    const done = [0, 0];
    const onBatch =
      (i: number) =>
      (d: number): void => {
        done[i] = d;
        log(`stories: ${done[0] + done[1]}/${cfg.stories} sampled`);
      };
    const parts = await Promise.all([
      runJob(
        { kind: 'sample', modelPath, backend: workerBackend, threads: workerThreads, options: { ...sampleOpts, count: half, seed: storySeed } },
        { onBatch: onBatch(0) },
      ),
      runJob(
        {
          kind: 'sample',
          modelPath,
          backend: workerBackend,
          threads: workerThreads,
          options: { ...sampleOpts, count: cfg.stories - half, seed: storySeed + half },
        },
        { onBatch: onBatch(1) },
      ),
    ]);
    sampled = parts.flat();
  } else {
    sampled = await sampleStories(model, { ...sampleOpts, count: cfg.stories, seed: storySeed, onBatch: (d, n) => log(`stories: ${d}/${n} sampled`) });
  }
  const tStories = Date.now();
  writeJsonl(
    file('stories', 'data/stories.jsonl'),
    sampled.map((s) => ({ text: s.text, finished: s.finished })),
  );

  // ---- 2. instructions the stories satisfy; swaps; held-out combinations
  const usable: StoryInstruction[] = [];
  for (const s of sampled) {
    const t = trimStory(s, cfg.storyMaxChars);
    const it = t === null ? null : extractInstruction(t);
    if (it) usable.push(it);
  }
  log(`instructions: ${usable.length} of ${sampled.length} stories name a known character and object in their first sentences`);
  check(usable.length >= 4, `only ${usable.length} of ${sampled.length} stories are usable: sample more stories (--stories)`);
  const items = augmentSwaps(usable, cfg.swaps, cfg.seed);
  // with swaps, held-out combinations come from the swap lists (the names and objects training covers well)
  const split = splitHeldout(items, {
    heldoutCombos: cfg.heldoutCombos,
    seed: cfg.seed,
    minCount: cfg.minCount,
    minTrain: cfg.minCount > 1 ? 2 : 1,
    names: cfg.swaps ? Object.keys(SWAP_NAMES) : undefined,
    objects: cfg.swaps ? Object.keys(SWAP_OBJECTS) : undefined,
  });
  const val = split.heldoutStories.slice(0, cfg.maxValRecords);
  check(split.train.length >= cfg.batchSize, `only ${split.train.length} training records: sample more stories (--stories)`);
  const withCombo = (it: StoryInstruction): object => ({ ...toRecord(it), name: it.name, object: it.object });
  writeJsonl(file('train', 'data/train.jsonl'), split.train.map(withCombo));
  writeJsonl(file('val', 'data/val.jsonl'), val.map(withCombo));
  writeJsonl(
    file('heldout', 'data/heldout.jsonl'),
    split.heldout.map((c) => ({ instruction: instructionFor(c), name: c.name, object: c.object })),
  );
  log(
    `split: ${split.train.length} training records (${usable.length} stories x ${cfg.swaps || 1}${cfg.swaps ? ' name/object swaps' : ''}), ${val.length} validation records, ${split.heldout.length} held-out combinations`,
  );

  // ---- 3. training: zero-init gates and random-init gates, everything else identical
  const records = [...val, ...split.train].map(toRecord);
  const trainTokens = cfg.epochs * split.train.reduce((n, it) => n + model.tokenizer.encode(`${it.instruction}\n${it.story}`).length + 2, 0);
  log(`training: ${cfg.epochs} epochs, ${(trainTokens / 1e6).toFixed(2)}M tokens per run, two runs${parallel ? ' in parallel' : ''}`);
  if (model.backend.name === 'ts' && trainTokens > 2e5) {
    log(
      `note: the TypeScript backend trains at roughly 500 tokens/s per core: expect about ${Math.ceil(trainTokens / 500 / 60 / (parallel ? 1 : 0.5))} minutes ` +
        '(the native backend takes about a minute; --quick takes seconds)',
    );
  }
  const baseVal = val.length ? baseLoss(model, val.map(toRecord)) : null;
  const jobOptions = (gateInit: 'zero' | 'random'): TrainJobOptions => {
    const tag = gateInit === 'zero' ? 'zero-init' : 'random-init';
    return {
      data: records,
      out: file(`adapter_${tag}`, `adapters/${tag}.safetensors`),
      promptLength: cfg.promptLength,
      adapterLayers: layers,
      gateInit,
      epochs: cfg.epochs,
      batchSize: cfg.batchSize,
      lr: cfg.lr,
      warmupSteps: cfg.warmupSteps,
      valSize: val.length,
      promptStyle: 'plain',
      seed: cfg.seed,
      metrics: file(`metrics_${tag}`, `adapters/${tag}.metrics.jsonl`),
      plot: null,
      checkpoint: file(`checkpoint_${tag}`, `adapters/${tag}.ckpt.safetensors`),
      overwrite: true, // the demo's own output folder: a rerun replaces its runs
    };
  };
  const callbacks = (
    label: string,
  ): {
    onProgress: (p: { step: number; totalSteps: number; loss: number; tokensPerS: number }) => void;
    onEpoch: (e: { epoch: number; valLoss: number | null }) => void;
  } => ({
    onProgress: (p) => {
      if (p.step % 25 === 0 || p.step === p.totalSteps)
        log(`train ${label}: step ${p.step}/${p.totalSteps} loss ${p.loss.toFixed(3)} (${Math.round(p.tokensPerS)} tok/s)`);
    },
    onEpoch: (e) => log(`train ${label}: epoch ${e.epoch} validation loss ${e.valLoss === null ? 'n/a' : e.valLoss.toFixed(3)}`),
  });
  const trainOne = async (gateInit: 'zero' | 'random'): Promise<RunSummary> => {
    const label = gateInit === 'zero' ? 'zero-init gates' : 'random-init gates';
    const ts = Date.now();
    const opts = jobOptions(gateInit);
    let r: TrainJobResult;
    if (parallel) r = await runJob({ kind: 'train', modelPath, backend: workerBackend, threads: workerThreads, options: opts }, callbacks(label));
    else r = await finetune({ ...opts, model, ...callbacks(label) });
    const tail = r.losses.slice(-Math.max(1, Math.round(r.losses.length / 10)));
    return {
      label,
      gateInit,
      adapter: opts.out,
      steps: r.steps,
      firstLoss: r.losses[0],
      finalLoss: r.losses[r.losses.length - 1],
      finalLossMean: tail.reduce((a, b) => a + b, 0) / tail.length,
      losses: r.losses,
      valLosses: r.valLosses.map((v) => v.valLoss),
      seconds: seconds(ts),
    };
  };
  let zero: RunSummary, rand: RunSummary;
  if (parallel) [zero, rand] = await Promise.all([trainOne('zero'), trainOne('random')]);
  else {
    zero = await trainOne('zero');
    rand = await trainOne('random');
  }
  const tTrain = Date.now();
  const zeroAdapter = loadAdapter(zero.adapter, model);
  const randAdapter = loadAdapter(rand.adapter, model);
  const stepsPerEpoch = Math.ceil(split.train.length / cfg.batchSize);
  writeLossChart(file('chart', 'loss.svg'), `${path.basename(modelPath)}, K=${cfg.promptLength}, L=${layers}`, zero, rand, baseVal, stepsPerEpoch);

  // ---- 4. evaluation on held-out combinations: base, zero-init adapter, random-init adapter
  const combos: Combo[] = [];
  for (let k = 0; k < cfg.samplesPerCombo; k++) combos.push(...split.heldout);
  const prompts = combos.map((c) => PROMPT_STYLES.plain.prompt({ instruction: instructionFor(c), input: '' }));
  const titles = combos.map((c) => PROMPT_STYLES.plain.prompt({ instruction: titleFor(c), input: '' }));
  const evalSeed = cfg.seed * 100003 + 7777;
  const evalOpts = {
    seed: evalSeed,
    temperature: cfg.evalTemperature,
    topP: cfg.evalTopP,
    maxTokens: cfg.evalMaxTokens,
    onBatch: (v: string, d: number, n: number): void => log(`evaluate ${v}: ${d}/${n} generated`),
  };
  const variants: { label: string; adapter: Adapter | null }[] = [
    { label: 'base model', adapter: null },
    { label: 'zero-init gates', adapter: zeroAdapter },
    { label: 'random-init gates', adapter: randAdapter },
  ];
  const gens = await generateVariants(model, prompts, variants, evalOpts);
  const [titleGens] = await generateVariants(model, titles, [{ label: 'base model (story-title prompt)', adapter: null }], evalOpts);
  const tEval = Date.now();
  const scored: ScoredGeneration[][] = gens.map((g) => g.map((x, i) => scoreOne(x, combos[i])));
  const titleScored = titleGens.map((x, i) => scoreOne(x, combos[i]));
  const keys = combos.map((c) => `${c.name}/${c.object}`);
  const [sBase, sZero, sRand] = scored.map((x) => aggregate(x, keys));
  writeJsonl(
    file('generations', 'generations.jsonl'),
    combos.map((c, i) => ({
      instruction: instructionFor(c),
      name: c.name,
      object: c.object,
      seed: evalSeed + i,
      base: scored[0][i],
      zero_init: scored[1][i],
      random_init: scored[2][i],
      base_title_prompt: titleScored[i],
    })),
  );

  const report: DemoReport = {
    model: modelPath,
    backend: model.backend.name,
    parallel,
    config: cfg,
    layers,
    data: {
      sampled: sampled.length,
      usable: usable.length,
      augmented: items.length,
      train: split.train.length,
      val: val.length,
      droppedForHeldout: split.dropped,
      heldoutCombos: split.heldout,
      names: new Set(split.train.map((x) => x.name)).size,
      objects: new Set(split.train.map((x) => x.object)).size,
    },
    baseValLoss: baseVal,
    training: { zeroInit: zero, randomInit: rand },
    scores: { base: sBase, baseTitle: aggregate(titleScored, keys), zeroInit: sZero, randomInit: sRand },
    evaluation: {
      prompts: prompts.length,
      temperature: cfg.evalTemperature,
      topP: cfg.evalTopP,
      maxTokens: cfg.evalMaxTokens,
      seeds: `row i samples with seed ${evalSeed} + i in every variant`,
    },
    examples: pickExamples(combos, scored, 4),
    timings: { loadS: seconds(t0, tLoad), storiesS: seconds(tLoad, tStories), trainS: seconds(tStories, tTrain), evalS: seconds(tTrain, tEval), totalS: 0 },
    files,
  };
  file('report_json', 'report.json');
  file('report_md', 'report.md');
  report.timings.totalS = seconds(t0);
  fs.writeFileSync(files.report_json, `${JSON.stringify(report, null, 2)}\n`);
  fs.writeFileSync(files.report_md, reportMarkdown(report));
  return report;
}

type Pts = { step: number; loss: number }[];

/** Moving average over `w` steps (the per-step loss of a batch of 4 is noisy). */
function smooth(losses: readonly number[], w: number): Pts {
  const out: Pts = [];
  let sum = 0;
  for (let i = 0; i < losses.length; i++) {
    sum += losses[i];
    if (i >= w) sum -= losses[i - w];
    out.push({ step: i + 1, loss: sum / Math.min(i + 1, w) });
  }
  return out;
}

/**
 * One SVG, two charts side by side, both runs in each: left the whole run (the random-init run
 * starts far above the base model, the zero-init run exactly at it), right from the end of the
 * first epoch on, zoomed in. Train loss as a moving average, validation loss per epoch.
 */
function writeLossChart(file: string, title: string, zero: RunSummary, rand: RunSummary, baseVal: number | null, stepsPerEpoch: number): void {
  const w = Math.max(1, Math.round(stepsPerEpoch / 10));
  const val = (r: RunSummary, fromBase: boolean): Pts => {
    const pts = r.valLosses.flatMap((v, i) => (v === null ? [] : [{ step: (i + 1) * stepsPerEpoch, loss: v }]));
    return fromBase && baseVal !== null ? [{ step: 0, loss: baseVal }, ...pts] : pts; // zero-init gates: step 0 is the base model
  };
  const series = (from: number): { name: string; color: string; points: Pts }[] => [
    { name: `zero-init: train (avg ${w})`, color: '#1f77b4', points: smooth(zero.losses, w).filter((p) => p.step >= from) },
    { name: 'zero-init: validation', color: '#0b3d91', points: val(zero, true).filter((p) => p.step >= from) },
    { name: `random-init: train (avg ${w})`, color: '#ff7f0e', points: smooth(rand.losses, w).filter((p) => p.step >= from) },
    { name: 'random-init: validation', color: '#b22222', points: val(rand, false).filter((p) => p.step >= from) },
  ];
  const parts = [`${file}.left.tmp`, `${file}.right.tmp`];
  writeSvgChart(parts[0], `${title}: zero-init vs random-init gates`, series(0));
  writeSvgChart(parts[1], 'from epoch 1 on (zoomed)', series(stepsPerEpoch));
  const inner = parts.map((p, i) => {
    const svg = fs.readFileSync(p, 'utf8');
    fs.rmSync(p);
    return svg.replace('<svg ', `<svg x="${i * 720}" y="0" `);
  });
  writeFileAtomic(file, `<svg xmlns="http://www.w3.org/2000/svg" width="1440" height="400" viewBox="0 0 1440 400">\n${inner.join('\n')}</svg>\n`);
}

/** The base model's validation loss on the same records, tokenized as finetune does. */
function baseLoss(model: LlamaModel, recs: readonly InstructionRecord[]): number {
  let sum = 0,
    n = 0;
  for (const r of recs) {
    const ex = tokenizeExample(model.tokenizer, r, 'plain', model.config.maxSeqLen);
    const l = model.loss([ex.tokens], [ex.targets], null);
    sum += l.loss * l.tokens;
    n += l.tokens;
  }
  return n ? sum / n : 0;
}

/** Examples where the zero-init adapter follows the instruction and the base does not, then others. */
function pickExamples(combos: readonly Combo[], s: readonly ScoredGeneration[][], n: number): ExampleGeneration[] {
  const ok = (x: ScoredGeneration): boolean => x.name && x.object;
  const seen = new Set<string>();
  const idx = combos
    .map((_, i) => i)
    .filter((i) => {
      const k = `${combos[i].name}/${combos[i].object}`;
      if (seen.has(k)) return false;
      seen.add(k);
      return true;
    });
  const good = idx.filter((i) => ok(s[1][i]) && !ok(s[0][i]));
  const rest = idx.filter((i) => !good.includes(i));
  const take = [...good.slice(0, n - 1), ...rest].slice(0, n);
  return take.map((i) => ({ instruction: instructionFor(combos[i]), base: s[0][i].text, zeroInit: s[1][i].text, randomInit: s[2][i].text }));
}

const pct = (x: number): string => `${(100 * x).toFixed(1)}%`;

function fmt(x: number | null | undefined): string {
  return x === null || x === undefined ? '-' : x.toFixed(3);
}

/** The scores table (markdown), as printed at the end of the demo. */
export function scoresTable(r: DemoReport): string {
  const lastVal = (t: RunSummary): number | null => t.valLosses[t.valLosses.length - 1] ?? null;
  const row = (label: string, s: Scores, train: string, val: string): string =>
    `| ${label} | ${pct(s.both)} ± ${(100 * s.bothCi95).toFixed(1)} | ${pct(s.name)} | ${pct(s.object)} | ${s.meanTokens.toFixed(0)} | ${train} | ${val} |`;
  const z = r.training.zeroInit,
    q = r.training.randomInit;
  return [
    `Held-out instructions: ${r.evaluation.prompts} = ${r.data.heldoutCombos.length} unseen name/object combinations x ${r.config.samplesPerCombo} seeds ` +
      `(temperature ${r.evaluation.temperature}, top-p ${r.evaluation.topP}, at most ${r.evaluation.maxTokens} tokens)`,
    '',
    '| model | name AND object (± 95%) | name | object | mean tokens | final train loss | val loss |',
    '|---|---|---|---|---|---|---|',
    row('base model', r.scores.base, '-', fmt(r.baseValLoss)),
    row('adapter, zero-init gates', r.scores.zeroInit, fmt(z.finalLossMean), fmt(lastVal(z))),
    row('adapter, random-init gates', r.scores.randomInit, fmt(q.finalLossMean), fmt(lastVal(q))),
    row('(reference) base model, story-title prompt', r.scores.baseTitle, '-', '-'),
  ].join('\n');
}

function reportMarkdown(r: DemoReport): string {
  const q = (s: string): string => s.replace(/\n/g, ' / ').replace(/\|/g, '\\|');
  const t = r.timings;
  const c = r.config;
  const ex = r.data.heldoutCombos[0];
  return [
    '# LLaMA-Adapter demo: instruction following on a 656K-parameter story model',
    '',
    `Base model \`${r.model}\` (${r.backend} backend${r.parallel ? ', two worker threads' : ''}), frozen. It wrote ${r.data.sampled} stories ` +
      `(temperature ${c.storyTemperature}, top-p ${c.storyTopP}); each was cut to its first whole sentences (at most ${c.storyMaxChars} characters), ` +
      `and the ${r.data.usable} that name a known character and object became (instruction, story) pairs such as ` +
      `"${instructionFor({ name: 'Lily', object: 'ball' })}".`,
    c.swaps
      ? `Each story was used ${c.swaps} times with its character renamed (same gender) and its object replaced, every other word as the model wrote it ` +
        `(${r.data.augmented} records); without the swaps the adapter learns the names the model writes most (Lily, Tim) instead of reading the instruction.`
      : 'The stories are used as written (no name/object swaps).',
    `${r.data.heldoutCombos.length} name/object combinations (e.g. "${ex ? instructionFor(ex) : ''}") were held out: no training story mentions both, ` +
      `while each name and each object does appear in training. ${r.data.train} training records, ${r.data.val} validation records (stories of held-out combinations).`,
    `Adapter: K=${c.promptLength} prompt vectors in each of the top L=${r.layers} layers, tanh gates per head; lr ${c.lr}, ${c.epochs} epochs, batch ${c.batchSize}, ` +
      `${c.warmupSteps} warmup steps then cosine; prompt style plain (instruction, newline, story). The ablation run is identical except for N(0, 1) gates.`,
    '',
    '## Scores on held-out combinations',
    '',
    scoresTable(r),
    '',
    'Score = fraction of generations that mention the requested name (case-sensitive) and object (any case, plural allowed) as whole words; ' +
      '± = 95% interval from the per-combination rates. ' +
      'The story-title row gives the base model "A story about NAME and a OBJECT." instead of the instruction, a prompt it continues more naturally; it is a reference, not a contender.',
    '',
    '![loss curves](loss.svg)',
    '',
    `Losses (train: mean of the last 10% of steps; val: last epoch): zero-init ${fmt(r.training.zeroInit.finalLossMean)} / ${fmt(r.training.zeroInit.valLosses.at(-1))}, ` +
      `random-init ${fmt(r.training.randomInit.finalLossMean)} / ${fmt(r.training.randomInit.valLosses.at(-1))}; base model val ${fmt(r.baseValLoss)}.`,
    '',
    '## Examples (same instruction, same seed)',
    '',
    ...r.examples.flatMap((e) => [
      `**${e.instruction}**`,
      '',
      `- base: ${q(e.base)}`,
      `- zero-init adapter: ${q(e.zeroInit)}`,
      `- random-init adapter: ${q(e.randomInit)}`,
      '',
    ]),
    '## Timings',
    '',
    `load ${t.loadS.toFixed(1)} s, stories ${t.storiesS.toFixed(1)} s, training (both runs${r.parallel ? ', in parallel' : ''}) ${t.trainS.toFixed(1)} s, ` +
      `evaluation ${t.evalS.toFixed(1)} s, total ${t.totalS.toFixed(1)} s.`,
    '',
  ].join('\n');
}
