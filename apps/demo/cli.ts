// `npm run demo` (node dist/apps/demo/main.js): the README's main job. The base model writes stories, they become
// instruction data, an adapter is trained with zero-init and with random-init gates, and the
// three models are scored on held-out instructions. Progress on stderr, the scores on stdout.

import { Command, Option } from 'commander';
import { backendNames, type BackendName } from '../../src/backend/index.js';
import { runDemo, scoresTable } from './demo.js';
import { int } from '../../src/cli/common.js';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { packageRoot } from '../../src/core/package-root.js';
import { runMultimodalDemo } from './multimodal.js';

interface DemoFlags {
  model?: string;
  outDir: string;
  stories?: number;
  seed?: number;
  backend: BackendName;
  quick?: boolean;
  multimodal?: boolean;
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
    .option('--multimodal', 'the multimodal demo instead: does an image-conditioned adapter name the pictured thing? (MobileNetV2 and random CLIP)')
    .action(async (f: DemoFlags) => {
      const t0 = Date.now();
      if (f.multimodal) {
        const shared = path.resolve(packageRoot() ?? '.', '../shared');
        fs.mkdirSync(f.outDir, { recursive: true });
        const rows = await runMultimodalDemo({
          assets: path.join(shared, 'assets'),
          modelPath: f.model ?? path.join(shared, 'assets/models/tinystories-656k'),
          encoders: ['nsfwjs:mobilenet_v2', path.join(shared, 'fixtures/clip-tiny')],
          perCombo: f.quick ? 2 : 12,
          seed: f.seed ?? 0,
          outDir: f.outDir,
          onLog: (line) => process.stderr.write(`[${((Date.now() - t0) / 1000).toFixed(0).padStart(4)}s] ${line}\n`),
        });
        process.stdout.write(
          '| encoder | trained with | test photos | stories naming the pictured thing (95% CI) | naming another thing (95% CI) | val loss |\n|---|---|---|---|---|---|\n',
        );
        const pct = (k: number, n: number, ci: [number, number]): string =>
          `${k}/${n} = ${((100 * k) / n).toFixed(1)}% [${ci[0].toFixed(1)}, ${ci[1].toFixed(1)}]`;
        for (const r of rows)
          process.stdout.write(
            `| ${r.encoder} | ${r.variant} | ${r.test} | ${pct(r.hits, r.n, r.ci)} | ${pct(r.other, r.n, r.otherCi)} | ${r.valLoss?.toFixed(3) ?? 'n/a'} |\n`,
          );
        return;
      }
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
