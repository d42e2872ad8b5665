// Filesystem helpers the library shares: mkdir -p and atomic whole-file writes.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { LlamaAdapterError } from './errors.js';
import { ioError, writeAll } from './fileio.js';

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

/**
 * Write `parts` (strings as UTF-8, byte arrays as they are), one after another, as the whole new
 * contents of `file`, atomically: to `file.tmp-<pid>`, fsync, then rename over `file`. A reader
 * sees the old file or the new one, never a partial write; on failure the temp file is removed
 * and a LlamaAdapterError names the file.
 */
export function writeFileAtomic(file: string, parts: string | Uint8Array | readonly (string | Uint8Array)[]): void {
  const list = typeof parts === 'string' || parts instanceof Uint8Array ? [parts] : parts;
  const tmp = `${file}.tmp-${process.pid}`;
  let fd: number;
  try {
    fd = fs.openSync(tmp, 'w');
  } catch (e) {
    throw ioError(tmp, e);
  }
  try {
    for (const p of list) writeAll(fd, typeof p === 'string' ? Buffer.from(p, 'utf8') : p);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fs.renameSync(tmp, file);
  } catch (e) {
    try {
      fs.closeSync(fd);
    } catch {
      // already closed
    }
    try {
      fs.unlinkSync(tmp);
    } catch {
      // nothing to clean up
    }
    throw e instanceof LlamaAdapterError ? e : ioError(file, e);
  }
}

/** The first of `names` that is a regular file in `dir`, or null. */
export function firstFileIn(dir: string, names: readonly string[]): string | null {
  for (const n of names) {
    const f = path.join(dir, n);
    try {
      if (fs.statSync(f).isFile()) return f;
    } catch {
      // not there
    }
  }
  return null;
}
