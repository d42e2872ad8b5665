// Where this package lives on disk: the nearest directory at or above a file that holds a
// package.json named "llama-adapter". The native addon, the demo's default model
// (../shared next to the repository), the benchmarks and the tests all find files from here.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const PACKAGE_NAME = 'llama-adapter';

/** The package root above `from` (default: this file's directory), or null when there is none. */
export function packageRoot(from: string = path.dirname(fileURLToPath(import.meta.url))): string | null {
  for (let d = path.resolve(from); ; d = path.dirname(d)) {
    const pj = path.join(d, 'package.json');
    if (fs.existsSync(pj)) {
      try {
        if ((JSON.parse(fs.readFileSync(pj, 'utf8')) as { name?: string }).name === PACKAGE_NAME) return d;
      } catch {
        // unreadable package.json: not ours, keep walking
      }
    }
    if (path.dirname(d) === d) return null;
  }
}
