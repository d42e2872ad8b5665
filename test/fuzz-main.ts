// `npm run fuzz -- [--format F] [--count N] [--seed S] [--watchdog-ms MS]`: the long fuzz run of
// issue 18, printing its table. Each format runs in a worker thread (heap capped at 2 GB) that
// reports every mutant; a mutant that takes longer than the watchdog is counted as a hang, the
// worker is terminated and a fresh one continues with the next mutant.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { FORMATS, emptyCounts, fuzzFormat, fuzzTable, type FuzzFormat, type FuzzReport, type Outcome } from './fuzz.js';

interface Job {
  format: FuzzFormat;
  dir: string;
  seed: number;
  start: number;
  count: number;
}

type Msg = { kind: 'ready' } | { kind: 'result'; i: number; outcome: Outcome; message: string } | { kind: 'done' };

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}

/** Run mutants start.. of one format in workers, restarting after a hang. */
async function runFormat(format: FuzzFormat, count: number, seed: number, watchdogMs: number, dir: string): Promise<FuzzReport> {
  const report: FuzzReport = { format, counts: emptyCounts(), mutants: 0, examples: {} };
  let next = 0;
  while (next < count) {
    const job: Job = { format, dir, seed, start: next, count: count - next };
    const w = new Worker(new URL(import.meta.url), { workerData: job, resourceLimits: { maxOldGenerationSizeMb: 2048 } });
    await new Promise<void>((resolve) => {
      let timer: NodeJS.Timeout | null = null;
      let ready = false;
      const arm = (): void => {
        if (timer) clearTimeout(timer);
        // setup (loading the base model) gets a longer allowance than one mutant
        timer = setTimeout(
          () => {
            report.counts.hang++;
            report.mutants++;
            report.examples.hang ??= `mutant ${next}: no answer within ${watchdogMs} ms`;
            next++;
            void w.terminate();
          },
          ready ? watchdogMs : 60_000,
        );
      };
      arm();
      w.on('message', (m: Msg) => {
        if (m.kind === 'ready') ready = true;
        else if (m.kind === 'result') {
          report.counts[m.outcome]++;
          report.mutants++;
          if (m.message && m.outcome !== 'clean-error') report.examples[m.outcome] ??= `mutant ${m.i}: ${m.message}`;
          next = m.i + 1;
        } else next = count;
        arm();
      });
      w.on('error', (e) => {
        // a worker killed by its heap limit: that mutant counts as a hang (it would allocate without bound)
        report.counts.hang++;
        report.mutants++;
        report.examples.hang ??= `mutant ${next}: ${e.message}`;
        next++;
      });
      w.on('exit', () => {
        if (timer) clearTimeout(timer);
        resolve();
      });
    });
  }
  return report;
}

async function main(): Promise<void> {
  const only = arg('--format', 'all');
  const count = Number(arg('--count', '1000'));
  const seed = Number(arg('--seed', '18'));
  const watchdogMs = Number(arg('--watchdog-ms', '10000'));
  const formats = only === 'all' ? [...FORMATS] : only.split(',');
  for (const f of formats) if (!(FORMATS as readonly string[]).includes(f)) throw new Error(`unknown format ${f} (known: ${FORMATS.join(', ')}, all)`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llama-adapter-fuzz-'));
  const reports: FuzzReport[] = [];
  try {
    for (const f of formats as FuzzFormat[]) {
      const t0 = Date.now();
      const r = await runFormat(f, count, seed, watchdogMs, path.join(dir, f));
      reports.push(r);
      process.stderr.write(`${f}: ${r.mutants} mutants in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
      for (const [k, v] of Object.entries(r.examples)) process.stderr.write(`  first ${k}: ${v.slice(0, 300)}\n`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  process.stdout.write(`${fuzzTable(reports)}\n\n(seed ${seed}, ${count} mutants per format, watchdog ${watchdogMs} ms)\n`);
}

if (process.env.NODE_TEST_CONTEXT) {
  // `node --test dist/test/` loads every file: this one is a script, not a test (npm run fuzz)
} else if (isMainThread) {
  main().catch((e: unknown) => {
    process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`);
    process.exit(1);
  });
} else {
  const job = workerData as Job;
  const port = parentPort as NonNullable<typeof parentPort>;
  const post = (m: Msg): void => port.postMessage(m);
  let first = true;
  void fuzzFormat(job.format, job.dir, {
    seed: job.seed,
    start: job.start,
    count: job.count,
    onResult: (i, outcome, message) => {
      if (first) post({ kind: 'ready' });
      first = false;
      post({ kind: 'result', i, outcome, message: message.slice(0, 500) });
    },
  }).then(() => post({ kind: 'done' }));
}
