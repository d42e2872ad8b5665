#!/usr/bin/env node
// Builds the native backend (binding.gyp -> build/Release/llama_adapter_native.node) with
// node-gyp. Run by `npm install` / `npm ci`; a failed build (no C++ compiler, no OpenBLAS, no
// node headers) is not an error: it prints one line and exits 0, and the library then uses the
// TypeScript backend. `--verbose` shows the compiler output; `--strict` exits non-zero on failure.

import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const verbose = process.argv.includes('--verbose');
const strict = process.argv.includes('--strict');

if (process.env.LLAMA_ADAPTER_SKIP_NATIVE) {
  console.log('llama-adapter: LLAMA_ADAPTER_SKIP_NATIVE is set; not building the native backend (the TypeScript backend will be used)');
  process.exit(0);
}

/** Candidate ways to run node-gyp: [command, argsPrefix]. */
function nodeGypCandidates() {
  const out = [];
  // npm puts its bundled node-gyp on PATH for install scripts (and sets npm_config_node_gyp).
  if (process.env.npm_config_node_gyp) out.push([process.execPath, [process.env.npm_config_node_gyp]]);
  const req = createRequire(import.meta.url);
  for (const spec of ['node-gyp/bin/node-gyp.js']) {
    try {
      out.push([process.execPath, [req.resolve(spec)]]);
    } catch {
      /* not a dependency */
    }
  }
  // npm's own bundled copy, next to the npm that ships with this node.
  const npmDir = path.resolve(path.dirname(process.execPath), '../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js');
  if (existsSync(npmDir)) out.push([process.execPath, [npmDir]]);
  out.push(['node-gyp', []]);
  out.push(['npx', ['--no-install', 'node-gyp']]);
  return out;
}

// Use the installed node headers when they exist (no download; works offline).
const args = ['rebuild'];
const nodeDir = path.resolve(path.dirname(process.execPath), '..');
if (existsSync(path.join(nodeDir, 'include/node/node_api.h'))) args.push(`--nodedir=${nodeDir}`);
args.push(`--jobs=max`);

let lastErr = '';
for (const [cmd, prefix] of nodeGypCandidates()) {
  const r = spawnSync(cmd, [...prefix, ...args], { cwd: root, encoding: 'utf8', stdio: verbose ? 'inherit' : 'pipe' });
  if (r.error) {
    lastErr = r.error.message;
    continue; // command not found: try the next candidate
  }
  if (r.status === 0) {
    if (verbose) console.log('llama-adapter: native backend built (build/Release/llama_adapter_native.node)');
    process.exit(0);
  }
  const text = `${r.stdout ?? ''}${r.stderr ?? ''}`;
  const firstError = text.split('\n').find((l) => /error|not found|cannot find/i.test(l));
  lastErr = (firstError ?? `node-gyp exited with ${r.status}`).trim();
  break; // node-gyp ran and the build failed: another node-gyp will not do better
}
console.log(`llama-adapter: native backend unavailable (${lastErr || 'node-gyp not found'}); the TypeScript backend will be used`);
process.exit(strict ? 1 : 0);
