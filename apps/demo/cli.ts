// `npm run demo` (node dist/apps/demo/main.js): the README's main job. The base model writes stories, they become
// instruction data, an adapter is trained with zero-init and with random-init gates, and the
// three models are scored on held-out instructions. Progress on stderr, the scores on stdout.

import { Command, Option } from 'commander';
import { backendNames, type BackendName } from '../../src/backend/index.js';
import { runDemo, scoresTable } from './demo.js';
import { int } from '../../src/cli/common.js';

interface DemoFlags {
  model?: string;
  outDir: string;
  stories?: number;
  seed?: number;
  backend: BackendName;
  quick?: boolean;
}

export function demoCommand(): Command {
  return new Command('demo')
    .description(
      'fine-tune an adapter on stories the base model wrote, then score instruction following on held-out name/object combinations (base vs zero-init vs random-init gates)',
    )
    .option('-m, --model <path>', 'base model (default: ../shared/assets/models/tinystories-656k next to the repository)')
    .option('--out-dir <dir>', 'where adapters, data, metrics, loss chart and report go', 'demo-out')
    .option('--stories <n>', 'stories to sample from the base model (default 2048; 64 with --quick)', int('--stories', 8))
    .option('--seed <n>', 'seed for sampling, the split, the swaps, initialisation and data order (default 0)', int('--seed', 0))
    .addOption(new Option('--backend <name>', 'compute backend').choices([...backendNames]).default('auto'))
    .option('--quick', 'a tiny configuration (seconds; too small to show anything, used by the tests)')
    .action(async (f: DemoFlags) => {
      const t0 = Date.now();
      const report = await runDemo({
        modelPath: f.model,
        outDir: f.outDir,
        stories: f.stories,
        seed: f.seed,
        backend: f.backend,
        quick: f.quick,
        onLog: (line) => process.stderr.write(`[${((Date.now() - t0) / 1000).toFixed(0).padStart(4)}s] ${line}\n`),
      });
      process.stdout.write(`${scoresTable(report)}\n\n`);
      const t = report.timings;
      process.stdout.write(
        `wall time ${t.totalS.toFixed(1)} s (stories ${t.storiesS.toFixed(1)} s, training ${t.trainS.toFixed(1)} s, evaluation ${t.evalS.toFixed(1)} s) on the ${report.backend} backend${report.parallel ? ' (2 worker threads)' : ''}\n`,
      );
      process.stdout.write(`report: ${report.files.report_md}\n`);
    });
}
