// `llama-adapter bench` (also `npm run bench`): training, prefill and decode speed, peak RSS and
// achieved GFLOP/s on a real or synthetic model, optionally side by side with the PyTorch peer.
// The harness itself lives in bench/ (run.ts); this file only parses the flags.

import { Command, InvalidArgumentError, Option } from 'commander';
import { BENCH_DEFAULTS, BENCH_KINDS, runBench, type BenchDtype, type BenchKind, type BenchOptions } from './run.js';
import { runServeBench } from './serve.js';
import { runClipBench } from './clip.js';
import { ENCODER_CONFIGS, type EncoderConfigName, runEncoderBench } from './encoders.js';
import { backendNames, type BackendName } from '../src/backend/index.js';
import { int } from '../src/cli/common.js';
import { check } from '../src/core/errors.js';

interface BenchFlags {
  config?: string;
  encoder?: EncoderConfigName;
  dtype: BenchDtype;
  backend: BackendName;
  threads?: number;
  comparePytorch?: boolean;
  compareRunc?: boolean;
  compareLlamaCpp?: boolean;
  runcSimd?: string;
  runcPaired?: boolean;
  pytorchPaired?: boolean;
  kinds: BenchKind[];
  steps: number;
  batch: number;
  seq: number;
  promptLength: number;
  adapterLayers: number;
  decodeTokens: number;
  python: string;
  profile?: boolean;
  waitIdle: number;
  serve?: boolean;
  clients: number;
  adapters: number;
  requests: number;
  serveTokens: number;
  clip?: string;
  images: number;
}

function kinds(v: string): BenchKind[] {
  const ks = v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const k of ks) {
    if (!(BENCH_KINDS as readonly string[]).includes(k)) throw new InvalidArgumentError(`unknown kind "${k}" (expected ${BENCH_KINDS.join(', ')})`);
  }
  if (ks.length === 0) throw new InvalidArgumentError('no kinds given');
  return ks as BenchKind[];
}

export function benchCommand(): Command {
  const d = BENCH_DEFAULTS;
  return new Command('bench')
    .description('measure adapter training, prefill and decode speed (one JSON line per measurement); --compare-pytorch runs the PyTorch peer too')
    .option('--config <name|path>', 'stories260K, tinystories-656k, medium, large, 7b-layer, 7b, or a checkpoint path')
    .addOption(
      new Option(
        '--encoder <name>',
        'instead: adapter training on a ViT-B/16- or RoBERTa-base-shaped random encoder (--batch, --seq, --steps, --prompt-length, --adapter-layers: 0 = all)',
      ).choices([...ENCODER_CONFIGS]),
    )
    .addOption(
      new Option('--dtype <dtype>', 'dtype of the frozen weights')
        .choices(['fp32', 'bf16', 'f16', 'q8_0', 'q4_0', 'q4_1', 'q5_0', 'q4_k', 'q6_k'])
        .default(d.dtype),
    )
    .option('--compare-llama-cpp', 'also decode and prefill with node-llama-cpp (llama.cpp) on the same model as a GGUF file, same threads')
    .addOption(new Option('--backend <name>', 'compute backend').choices([...backendNames]).default(d.backend))
    .option('--threads <n>', "native backend threads (default: all cores); the PyTorch peer gets the backend's thread count", int('--threads', 1))
    .option('--compare-runc', 'also decode with a run.c-equivalent C peer (bench/runc, gcc -Ofast -march=native -fopenmp) on the same model, fp32')
    .addOption(
      new Option('--runc-simd <level>', "the run.c peer's SIMD level (default: native, or the level LLAMA_ADAPTER_SIMD forces our kernels to)").choices([
        'native',
        'avx2',
        'sse4',
        'scalar',
      ]),
    )
    .option(
      '--runc-paired',
      '--compare-runc: each peer run right after one of our decode runs; the ratio is the median of the pairs (a machine whose speed drifts)',
    )
    .option('--compare-pytorch', 'also run ../shared/reference/bench_torch.py with the same settings and print ratios')
    .option(
      '--pytorch-paired',
      '--compare-pytorch: training also in 5 pairs (one of ours, then one peer run); the ratio is the median of the pairs (a machine whose speed drifts)',
    )
    .addOption(new Option('--kinds <list>', 'comma-separated: train, prefill, decode').argParser(kinds).default([...d.kinds], d.kinds.join(',')))
    .option('--steps <n>', 'timed training steps after one warm-up (and the most repetitions of prefill/decode)', int('--steps', 1), d.steps)
    .option('--batch <B>', 'training rows', int('--batch', 1), d.batch)
    .option('--seq <T>', 'tokens per training row and prefill length', int('--seq', 2), d.seq)
    .option('--prompt-length <K>', 'adaption prompt length', int('--prompt-length', 1), d.promptLength)
    .option('--adapter-layers <L>', 'adapted layers (0 = all but the first two, at least 1)', int('--adapter-layers', 0), d.adapterLayers)
    .option('--decode-tokens <n>', 'tokens to decode', int('--decode-tokens', 1), d.decodeTokens)
    .option('--python <path>', 'python with torch for --compare-pytorch', d.python)
    .option('--profile', 'time every kernel call and print a table per kind to stderr (adds a little overhead)')
    .option(
      '--wait-idle <seconds>',
      "before each phase, wait up to this long for other processes to leave the CPU (0 = don't)",
      int('--wait-idle', 0),
      d.waitIdle,
    )
    .option('--serve', 'benchmark the HTTP server instead: concurrent streams over adapters vs one stream vs a sequential server')
    .option('--clients <n>', '--serve: concurrent streaming clients', int('--clients', 1), 16)
    .option('--adapters <n>', '--serve: distinct adapters the clients are spread over', int('--adapters', 1), 8)
    .option('--requests <n>', '--serve: requests per client, one after another', int('--requests', 1), 2)
    .option('--serve-tokens <n>', '--serve: tokens generated per request', int('--serve-tokens', 1), 64)
    .option(
      '--clip <name|dir>',
      'benchmark a CLIP vision tower instead (clip-tiny, vit-b16, vit-l14 = synthetic HF-layout weights, or an HF CLIP dir): images/s, then multimodal training on --config with cached features',
    )
    .option('--images <n>', '--clip: images per encoder forward', int('--images', 1), 8)
    .action(async (f: BenchFlags) => {
      const out = (line: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(line)}\n`);
      if (f.encoder) {
        const e = { encoder: f.encoder, backend: f.backend, threads: f.threads, steps: f.steps, batch: f.batch, seq: f.seq, promptLength: f.promptLength };
        return runEncoderBench({ ...e, adapterLayers: f.adapterLayers, comparePytorch: f.comparePytorch ?? false, python: f.python }, out);
      }
      check(f.config, '--config (or --encoder) is required');
      const config = f.config;
      if (f.clip) {
        const c = { clip: f.clip, config, backend: f.backend, threads: f.threads, images: f.images, steps: f.steps, python: f.python };
        const shape = { batch: f.batch, seq: f.seq, promptLength: f.promptLength, adapterLayers: f.adapterLayers };
        return runClipBench({ ...c, ...shape, comparePytorch: f.comparePytorch ?? false, waitIdle: f.waitIdle }, out);
      }
      if (f.serve) {
        const s = { clients: f.clients, adapters: f.adapters, requests: f.requests, tokens: f.serveTokens, promptTokens: 16 };
        return runServeBench({ config, backend: f.backend, threads: f.threads, dtype: f.dtype, ...s }, out);
      }
      const o: BenchOptions = {
        config,
        dtype: f.dtype,
        backend: f.backend,
        threads: f.threads,
        comparePytorch: f.comparePytorch ?? false,
        compareRunc: f.compareRunc ?? false,
        compareLlamaCpp: f.compareLlamaCpp ?? false,
        runcSimd: f.runcSimd,
        runcPaired: f.runcPaired ?? false,
        pytorchPaired: f.pytorchPaired ?? false,
        kinds: f.kinds,
        steps: f.steps,
        batch: f.batch,
        seq: f.seq,
        promptLength: f.promptLength,
        adapterLayers: f.adapterLayers,
        decodeTokens: f.decodeTokens,
        python: f.python,
        profile: f.profile ?? false,
        waitIdle: f.waitIdle,
      };
      await runBench(o, out);
    });
}
