// The small seeded fuzz run of `npm test` (issue 18): a few hundred mutants per format, each at
// most a couple of seconds, loaded in process. Any raw error, error not naming the file or load
// with NaN/Inf values fails the test with the first offending message; a hang fails by timeout.
// The long run with a per-mutant watchdog is `npm run fuzz` (test/fuzz-main.ts).
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { FORMATS, fuzzFormat } from './fuzz.js';

const tmp = fs.mkdtempSync(path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'llama-adapter-fuzz-')); // tmpfs: cheap opens
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('fuzz: every format read fails cleanly or loads valid values', () => {
  for (const format of FORMATS) {
    it(format, { timeout: 60_000 }, async () => {
      const r = await fuzzFormat(format, path.join(tmp, format), { seed: 18, count: 250, budgetMs: 1500 });
      assert.ok(r.mutants >= 10, `only ${r.mutants} mutants ran`);
      for (const bad of ['raw-error', 'unnamed-error', 'non-finite'] as const) {
        assert.equal(r.counts[bad], 0, `${format}: ${r.counts[bad]} x ${bad} of ${r.mutants}; ${r.examples[bad] ?? ''}`);
      }
      assert.ok(r.counts['clean-error'] > 0, `${format}: no mutant was refused`);
    });
  }
});
