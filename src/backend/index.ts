// Backend selection: 'native' (the N-API addon, fast), 'ts' (the plain-TypeScript oracle), or
// 'auto' (native when the addon loads, else ts with one line on stderr saying so).
// LLAMA_ADAPTER_BACKEND and LLAMA_ADAPTER_THREADS set the defaults.

import type { Backend } from './backend.js';
import { TsBackend } from './ts/index.js';
import { LlamaAdapterError } from '../core/errors.js';
import { loadNativeBackend } from './native.js';

export type BackendName = 'ts' | 'native' | 'auto';
export type { Backend } from './backend.js';

const cache = new Map<string, Backend>();
let warned = false;

export function getBackend(name: BackendName = (process.env.LLAMA_ADAPTER_BACKEND as BackendName) || 'auto', threads?: number): Backend {
  if (name !== 'ts' && name !== 'native' && name !== 'auto') {
    throw new LlamaAdapterError(`unknown backend "${String(name)}" (expected ts, native or auto)`);
  }
  const envThreads = Number(process.env.LLAMA_ADAPTER_THREADS) || undefined;
  const nThreads = threads ?? envThreads;
  const key = `${name}:${nThreads ?? ''}`;
  const hit = cache.get(key);
  if (hit) return hit;
  let b: Backend;
  if (name === 'ts') b = new TsBackend();
  else {
    const r = loadNativeBackend(nThreads);
    if (r.backend) b = r.backend;
    else if (name === 'native') throw new LlamaAdapterError(`native backend unavailable: ${r.error}`);
    else {
      if (!warned) process.stderr.write(`llama-adapter: native backend unavailable (${r.error}); using the TypeScript backend\n`);
      warned = true;
      b = new TsBackend();
    }
  }
  cache.set(key, b);
  return b;
}
