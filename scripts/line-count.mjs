// Prints the line count of the library (src/), the native core (native/) and the web UI (ui/) per
// folder, so CI logs show how the code grows (`npm run lines`).
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const counts = new Map();
function walk(dir) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p);
    else if (/\.(ts|tsx|cc|h|mjs)$/.test(name)) {
      const folder = relative(root, dir);
      counts.set(folder, (counts.get(folder) ?? 0) + readFileSync(p, 'utf8').split('\n').length - 1);
    }
  }
}
for (const top of ['src', 'native', 'ui']) walk(join(root, top));
let total = 0;
for (const [folder, n] of [...counts].sort()) {
  console.log(`${String(n).padStart(6)}  ${folder}`);
  total += n;
}
console.log(`${String(total).padStart(6)}  total (src/ + native/ + ui/)`);
