// The bench run: load or generate the model, time the selected kinds (decode, prefill, train: in
// that order so each peak RSS is as close to its own as a monotonic maximum allows), measure the
// backend's matrix-multiply peak, optionally run the PyTorch peer with identical settings, and
// emit one JSON object per measurement plus one ratio object per kind both sides measured.
// Every timing carries `other_load_pct`: how much of the machine other processes used meanwhile.

import * as path from 'node:path';
import type { BackendName } from '../src/backend/index.js';
import type { LlamaModel } from '../src/model/model.js';
import { check } from '../src/core/errors.js';
import { detectFormat } from '../src/formats/registry.js';
import type { WeightDtype } from '../src/core/weights.js';
import { runLlamaCppPeer } from './peer-llamacpp.js';
import { buildModel, resolveConfig, sharedDir, type ResolvedConfig } from './configs.js';
import { decodeFlops, prefillFlops, trainFlops } from './flops.js';
import { cpuSnapshot, otherLoadPercent, waitForIdle } from './machine.js';
import { decodeOnce, measureDecode, measurePeak, measurePrefill, measureTrain, median, trainBatch } from './measure.js';
import { runPeer, SYSTEM_PYTHON, torchStatus, type PeerLine, type PeerRun, type PeerSettings } from './peer.js';
import { buildRuncPeer, isLegacyLlama2c, RUNC_CFLAGS, runRuncPeer, tempModelFile, writeLegacyLlama2c } from './peer-runc.js';
import { KernelProfile } from './profile.js';
import { nativeInfo } from '../src/backend/native.js';

export type BenchKind = 'train' | 'prefill' | 'decode';
export const BENCH_KINDS: readonly BenchKind[] = ['train', 'prefill', 'decode'];

export interface BenchOptions {
  config: string; // synthetic shape, named real model, or checkpoint path
  dtype: BenchDtype;
  backend: BackendName;
  threads?: number; // native backend threads (default: the backend's)
  comparePytorch: boolean;
  compareRunc: boolean; // also decode with the llama2.c run.c peer (fp32 only)
  compareLlamaCpp?: boolean; // also decode and prefill with node-llama-cpp on the same model as GGUF
  runcSimd?: string; // the peer's SIMD level (RUNC_CFLAGS); default: native at our best target, else the level our kernels are forced to
  runcPaired?: boolean; // --compare-runc: each peer run right after one of ours, the ratio the median of the pairs' ratios
  pytorchPaired?: boolean; // --compare-pytorch: training also measured in PYTORCH_PAIRS pairs (ours, then the peer), the ratio the median of the pairs' ratios
  kinds: readonly BenchKind[];
  steps: number; // timed training steps (after one warm-up); also the most repetitions of prefill/decode
  batch: number; // B
  seq: number; // T (training rows and the prefill length)
  promptLength: number; // K
  adapterLayers: number; // L adapted layers; 0 = all but the first two (at least 1)
  decodeTokens: number; // tokens decoded
  python: string; // interpreter for the peer
  profile: boolean; // time every kernel call and print a table per kind to stderr
  waitIdle: number; // seconds to wait at most for other processes to calm down before each phase (0 = don't)
}

export const BENCH_DEFAULTS: Omit<BenchOptions, 'config'> = {
  dtype: 'fp32',
  backend: 'auto',
  comparePytorch: false,
  compareRunc: false,
  kinds: BENCH_KINDS,
  steps: 5,
  batch: 4,
  seq: 256,
  promptLength: 10,
  adapterLayers: 0,
  decodeTokens: 128,
  python: SYSTEM_PYTHON,
  profile: false,
  waitIdle: 0,
};

/** The bench's dtype names (fp32 as PyTorch says it; f16 = IEEE half weights; the quantized ggml types). */
export type BenchDtype = 'fp32' | 'bf16' | 'f16' | 'q8_0' | 'q4_0' | 'q4_1' | 'q5_0' | 'q4_k' | 'q6_k';

export type BenchLine = Record<string, string | number | boolean | null>;

export const round = (x: number, d = 3): number => (Number.isFinite(x) ? Number(x.toPrecision(Math.max(d, 1) + 2)) : x);
const peakRssMb = (): number => round(process.resourceUsage().maxRSS / 1024);
const log = (msg: string): void => {
  process.stderr.write(`bench: ${msg}\n`);
};

/** Run the benchmark; result objects go to `emit` (ours once the peak is measured, then the peer's and the ratios). */
export async function runBench(o: BenchOptions, emit: (line: BenchLine) => void): Promise<void> {
  check(o.kinds.length > 0, 'bench: no kinds selected');
  const cfg = resolveConfig(o.config);
  const dtype: WeightDtype = o.dtype === 'fp32' ? 'f32' : o.dtype;
  log(cfg.kind === 'synthetic' ? `generating synthetic "${cfg.name}" weights (${o.dtype})` : `loading ${cfg.path} (${o.dtype})`);
  const prof = o.profile ? new KernelProfile() : undefined;
  const { model, loadSeconds, weightsMb } = await buildModel(cfg, dtype, o.backend, o.threads, prof);
  const c = model.config,
    be = model.backend;
  const L = o.adapterLayers || Math.max(1, c.nLayers - 2);
  check(L <= c.nLayers, `bench: --layers ${L} is more than the model's ${c.nLayers} layers`);
  const simd = be.name === 'native' ? (nativeInfo()?.simd ?? null) : null;
  const adapterName = (be as { adapter?: string }).adapter ?? null; // a device backend's adapter (webgpu: SwiftShader is a CPU emulation)
  const base: BenchLine = { config: o.config, backend: be.name, dtype: o.dtype, threads: be.threads, simd, device: adapterName };
  const settle = async (): Promise<void> => {
    if (o.waitIdle > 0) await waitForIdle(o.waitIdle, log);
  };

  // Each kind's line is completed (peak fields) after the peak measurement, which runs last so
  // its large buffers never count in a kind's peak RSS.
  interface Measured {
    kind: BenchKind;
    tps: number;
    flops: number;
    seconds: number;
    rss: number;
    other: number | null;
    extra: BenchLine;
  }
  const measured: Measured[] = [];
  const ours = new Map<BenchKind, number>();
  let trainSteps = o.steps; // timed training steps we ran; the PyTorch peer runs as many
  let decodeReps = o.steps; // timed decode runs we ran; the run.c peer runs as many (5 to 30)
  const timed = async <R>(kind: BenchKind, what: string, fn: () => Promise<R> | R): Promise<{ r: R; other: number | null }> => {
    await settle();
    log(`${kind}: ${what}`);
    prof?.reset();
    const a = cpuSnapshot();
    const r = await fn();
    const other = otherLoadPercent(a, cpuSnapshot());
    if (prof) log(prof.table(kind));
    if (other !== null && other >= 10) log(`warning: other processes used ${other}% of the machine during ${kind}; its timing is low`);
    return { r, other };
  };
  const done = (m: Omit<Measured, 'rss'>): void => {
    measured.push({ ...m, rss: peakRssMb() });
    ours.set(m.kind, m.tps);
  };
  const run = new Set(o.kinds);
  const trainShape = { B: o.batch, T: o.seq, K: o.promptLength, L, lossRows: trainBatch(c.vocabSize, o.batch, o.seq).lossRows };
  if (run.has('decode')) {
    const { r, other } = await timed('decode', `${o.decodeTokens} tokens`, () => measureDecode(model, o.decodeTokens, o.steps));
    decodeReps = r.reps;
    done({
      kind: 'decode',
      tps: r.n / r.seconds,
      flops: decodeFlops(c, r.n),
      seconds: r.seconds,
      other,
      extra: { tokens: r.n, seconds: round(r.seconds), reps: r.reps, adapter: false },
    });
  }
  if (run.has('prefill')) {
    const { r, other } = await timed('prefill', `${o.seq} tokens`, () => measurePrefill(model, o.seq, o.steps));
    done({
      kind: 'prefill',
      tps: r.T / r.seconds,
      flops: prefillFlops(c, r.T),
      seconds: r.seconds,
      other,
      extra: { T: r.T, seconds: round(r.seconds), reps: r.reps, adapter: false },
    });
  }
  if (run.has('train')) {
    const what = `B=${o.batch} T=${o.seq} K=${o.promptLength} L=${L}, at least ${o.steps} steps and 0.5 s after a warm-up`;
    const { r, other } = await timed('train', what, () =>
      measureTrain(model, { B: o.batch, T: o.seq, K: o.promptLength, L, steps: o.steps, afterWarmup: () => prof?.reset() }),
    );
    trainSteps = r.steps;
    done({
      kind: 'train',
      tps: (o.batch * o.seq) / r.stepSeconds,
      flops: trainFlops(c, trainShape),
      seconds: r.stepSeconds,
      other,
      extra: {
        step_s: round(r.stepSeconds),
        B: o.batch,
        T: o.seq,
        K: o.promptLength,
        L,
        steps: r.steps,
        loss_rows: r.lossRows,
        adapter_params: r.adapterParams,
        loss: round(r.loss, 5),
      },
    });
  }

  await settle();
  log(`measuring the ${be.name} backend's matrix-multiply peak`);
  const p0 = cpuSnapshot();
  const peak = await measurePeak(be, dtype === 'bf16' ? 'bf16' : 'f32'); // quantized: the fp32 GEMM peak
  const peakFields: BenchLine = {
    peak_gflops: round(peak.gflops),
    peak_kernel: peak.kernel,
    peak_gflops_fp32_gemm: round(peak.fp32Gemm),
    peak_other_load_pct: otherLoadPercent(p0, cpuSnapshot()),
  };
  for (const m of measured) {
    const gflops = m.flops / m.seconds / 1e9;
    emit({
      ...base,
      kind: m.kind,
      tokens_per_s: round(m.tps),
      peak_rss_mb: m.rss,
      gflops: round(gflops),
      gflops_ratio: round(gflops / peak.gflops),
      other_load_pct: m.other,
      ...m.extra,
      ...peakFields,
      weights_mb: round(weightsMb),
      load_s: round(loadSeconds),
    });
  }
  if (o.compareLlamaCpp) {
    await settle();
    const a = cpuSnapshot();
    const r = await runLlamaCppPeer(
      {
        dtype: o.dtype,
        threads: be.threads,
        decodeTokens: o.decodeTokens,
        prefillTokens: o.seq,
        reps: Math.max(3, Math.min(o.steps, 10)),
        ggufPath: cfg.kind === 'path' && detectFormat(cfg.path) === 'gguf' ? cfg.path : null,
      },
      c,
      model.weights,
      log,
    );
    const other = otherLoadPercent(a, cpuSnapshot());
    for (const [kind, theirs] of [
      ['decode', r.decode],
      ['prefill', r.prefill],
    ] as const) {
      const mine = ours.get(kind);
      if (mine === undefined || theirs === null) continue;
      emit({
        ...base,
        kind,
        peer: `node-llama-cpp-${r.version}`,
        ratio_vs_llamacpp: round(mine / theirs),
        tokens_per_s: round(mine),
        llamacpp_tokens_per_s: round(theirs),
        peer_file: r.file,
        other_load_pct: other,
      });
    }
  }
  if (o.compareRunc && run.has('decode')) {
    await settle();
    emit(await runcComparison(o, cfg, model, ours.get('decode') as number, decodeReps, base, log));
  }
  if (!o.comparePytorch) return;

  // ---- the PyTorch peer, same configuration and settings
  const script = path.join(sharedDir(), 'reference', 'bench_torch.py');
  const st = torchStatus(o.python, script);
  if (!st.ok) {
    emit({ ...base, kind: 'compare', peer: 'pytorch', skipped: true, reason: st.reason });
    return;
  }
  const peerConfig = cfg.kind === 'synthetic' ? cfg.name : cfg.path;
  const decode = run.has('decode') ? Math.min(o.decodeTokens, c.maxSeqLen - 1) : 0;
  await settle();
  log(`running the PyTorch ${st.version} peer (${be.threads} threads)`);
  let peer: PeerRun;
  const peerSettings: PeerSettings = {
    python: o.python,
    script,
    config: peerConfig,
    threads: be.threads,
    dtype: dtype === 'bf16' ? 'bf16' : 'f32', // a quantized or f16 base is compared with PyTorch fp32
    steps: trainSteps,
    B: o.batch,
    T: o.seq,
    K: o.promptLength,
    L,
    decode,
  };
  const q0 = cpuSnapshot();
  try {
    peer = await runPeer(peerSettings);
  } catch (e) {
    emit({ ...base, kind: 'compare', peer: 'pytorch', skipped: true, reason: e instanceof Error ? e.message : String(e) });
    return;
  }
  const peerOther = peer.cpuSeconds === null ? null : otherLoadPercent(q0, cpuSnapshot(), peer.cpuSeconds);
  if (peerOther !== null && peerOther >= 10) log(`warning: other processes used ${peerOther}% of the machine during the peer's run`);
  const theirs = new Map<BenchKind, number>();
  for (const p of peer.lines) {
    const kind = p.kind;
    if ((kind !== 'train' && kind !== 'decode') || !run.has(kind)) continue;
    const tps = Number(p.tokens_per_s);
    theirs.set(kind, tps);
    const seconds = kind === 'train' ? Number(p.step_s) : decode / tps;
    const flops = kind === 'train' ? trainFlops(c, trainShape) : decodeFlops(c, decode);
    const gflops = flops / seconds / 1e9;
    emit({
      ...base,
      backend: 'pytorch',
      threads: Number(p.threads),
      kind,
      tokens_per_s: round(tps),
      peak_rss_mb: peer.peakRssMb === null ? null : round(peer.peakRssMb),
      gflops: round(gflops),
      gflops_ratio: round(gflops / peak.gflops),
      other_load_pct: peerOther,
      ...peerExtra(p),
      peer: String(p.peer),
      peer_command: peer.command,
      peer_wall_s: round(peer.seconds),
      ...peakFields,
    });
  }
  for (const kind of BENCH_KINDS) {
    if (!run.has(kind)) continue;
    const a = ours.get(kind),
      b = theirs.get(kind);
    if (a === undefined) continue;
    if (b === undefined) {
      emit({ ...base, kind, ratio_vs_pytorch: null, reason: `bench_torch.py has no ${kind} measurement` });
      continue;
    }
    emit({ ...base, kind, ratio_vs_pytorch: round(a / b), tokens_per_s: round(a), pytorch_tokens_per_s: round(b), peer: `pytorch-${st.version}` });
  }
  if (o.pytorchPaired && run.has('train')) {
    await settle();
    emit(await pytorchPairedTrain(model, { ...peerSettings, decode: 0 }, st.version, base));
  }
}

/** Training pairs run against the PyTorch peer by --pytorch-paired. */
const PYTORCH_PAIRS = 5;

/**
 * Training against the PyTorch peer in pairs: one of our timed runs, then one peer run (a fresh
 * process: imports, weights, warm-up, the same timed steps). The peer's rate on a small model swung
 * 2x between runs of one build (tinystories-656k: 9.2k-17.5k tok/s; a VM's two vCPUs change place),
 * so the ratio is the median of the pairs' ratios, as for --runc-paired; the spread is kept.
 */
async function pytorchPairedTrain(model: LlamaModel, settings: PeerSettings, version: string, base: BenchLine): Promise<BenchLine> {
  log(`training against the PyTorch peer in ${PYTORCH_PAIRS} pairs (ours, then the peer; ${settings.steps} timed steps each)`);
  const oursR: number[] = [];
  const theirsR: number[] = [];
  let command = '';
  for (let i = 0; i < PYTORCH_PAIRS; i++) {
    const r = await measureTrain(model, settings);
    const peer = await runPeer(settings);
    const line = peer.lines.find((p) => p.kind === 'train');
    check(line !== undefined, `bench: ${peer.command} printed no train line`);
    command = peer.command;
    oursR.push((settings.B * settings.T) / r.stepSeconds);
    theirsR.push(Number(line.tokens_per_s));
    log(`pair ${i + 1}: ours ${round(oursR[i])} tok/s, PyTorch ${round(theirsR[i])} tok/s (${round(oursR[i] / theirsR[i])}x)`);
  }
  const ratios = oursR.map((t, i) => t / theirsR[i]);
  return {
    ...base,
    kind: 'train',
    ratio_vs_pytorch: round(median(ratios)),
    ratio_min: round(Math.min(...ratios)),
    ratio_max: round(Math.max(...ratios)),
    tokens_per_s: round(median(oursR)),
    pytorch_tokens_per_s: round(median(theirsR)),
    pytorch_pairs: PYTORCH_PAIRS,
    pytorch_paired: true,
    peer: `pytorch-${version}`,
    peer_command: command,
  };
}

/** The peer's own fields worth keeping (shape and timing), as flat JSON values. */
function peerExtra(p: PeerLine): BenchLine {
  const out: BenchLine = {};
  for (const k of ['step_s', 'B', 'T', 'K', 'L']) {
    const v = p[k];
    if (typeof v === 'number') out[k] = k === 'step_s' ? round(v) : v;
  }
  if (typeof p.dtype === 'string') out.peer_dtype = p.dtype;
  return out;
}

/** Decode with the run.c peer on the same model (written as a legacy llama2.c file when needed); one ratio line. */
async function runcComparison(
  o: BenchOptions,
  cfg: ResolvedConfig,
  model: LlamaModel,
  oursTps: number,
  oursReps: number,
  base: BenchLine,
  log: (msg: string) => void,
): Promise<BenchLine> {
  const skip = (reason: string): BenchLine => ({ ...base, kind: 'compare', peer: 'run.c', skipped: true, reason });
  if (o.dtype !== 'fp32') return skip('run.c computes in fp32 only');
  const info = nativeInfo();
  const level = o.runcSimd ?? (info && info.simd !== info.simdTargets[0] ? info.simd : 'native');
  const built = buildRuncPeer(level);
  if (!built.ok) return skip(built.reason);
  const c = model.config;
  const steps = Math.min(o.decodeTokens, c.maxSeqLen - 1);
  let file = cfg.kind === 'path' ? cfg.path : '';
  let cleanup = (): void => {};
  try {
    if (!file || !isLegacyLlama2c(file)) {
      const t = tempModelFile();
      file = t.file;
      cleanup = t.cleanup;
      log(`writing the model as a llama2.c file for the run.c peer (${file})`);
      writeLegacyLlama2c(file, c, model.weights);
    }
    // As many runs as our median was taken over (5 to 30); its median too, since one run of a
    // small model swung by 2x (stories260K: 9,644 and 17,828 tok/s).
    const runs = Math.max(5, Math.min(30, oursReps));
    log(
      `running the run.c peer (${RUNC_CFLAGS[level].join(' ')}, ${model.backend.threads} threads, ${steps} tokens, ${runs} runs${o.runcPaired ? ', each after one of ours' : ''})`,
    );
    let command = '';
    const peerRun = (): number => {
      // the peer, like run.c, times from the end of its first step: give it one more so both count `steps`
      const r = runRuncPeer(built.bin, file, steps + 1, model.backend.threads);
      command = r.command;
      return r.tokensPerS;
    };
    if (!o.runcPaired) {
      const theirs = median(Array.from({ length: runs }, peerRun));
      return {
        ...base,
        kind: 'decode',
        ratio_vs_runc: round(oursTps / theirs),
        tokens_per_s: round(oursTps),
        runc_tokens_per_s: round(theirs),
        runc_runs: runs,
        peer: 'run.c',
        runc_simd: level,
        peer_command: command,
      };
    }
    // Paired: a machine whose speed drifts (on a VM the two vCPUs' placement changes the cost of
    // every cross-thread hand-off by up to 4x, for both sides, for seconds at a time) moves both
    // runs of a pair together; the ratio is the median of the pairs' ratios (bench/README.md).
    const oursR: number[] = [];
    const theirsR: number[] = [];
    for (let i = 0; i < runs; i++) {
      // Each side warmed up first: the peer's first step is untimed (and its process is new), ours
      // gets one untimed run, since the peer's run has just taken the cores and caches.
      await decodeOnce(model, steps);
      oursR.push(steps / (await decodeOnce(model, steps)));
      theirsR.push(peerRun());
    }
    return {
      ...base,
      kind: 'decode',
      ratio_vs_runc: round(median(oursR.map((t, i) => t / theirsR[i]))),
      tokens_per_s: round(median(oursR)),
      runc_tokens_per_s: round(median(theirsR)),
      runc_runs: runs,
      runc_paired: true,
      peer: 'run.c',
      runc_simd: level,
      peer_command: command,
    };
  } catch (e) {
    return skip(e instanceof Error ? e.message : String(e));
  } finally {
    cleanup();
  }
}
