// Filesystem helpers the library shares.

import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * mkdir -p. Node's `mkdirSync(dir, { recursive: true })` loops forever where mkdir keeps failing
 * with ENOENT under a parent that exists (procfs: `demo --out-dir /proc/x` hung); this creates the
 * missing directories one at a time, so such a path fails at once with mkdir's own error.
 */
export function mkdirs(dir: string): void {
  const missing: string[] = [];
  for (let p = path.resolve(dir); !fs.existsSync(p); ) {
    missing.push(p);
    const up = path.dirname(p);
    if (up === p) break;
    p = up;
  }
  for (const d of missing.reverse()) fs.mkdirSync(d);
}
