// Backend registry and selection. Each registered backend has a loader that never throws (it
// returns the backend or why it is unavailable); the TypeScript backend is the oracle every other
// backend is conformance-tested against (test/backend-conformance.test.ts runs them all). A new
// backend is one line in `backends`. A device backend (webgpu) starts asynchronously: only
// getBackendAsync (which loadModel uses) returns it. 'auto' there takes webgpu when a hardware
// adapter exists (never SwiftShader, the CPU emulation; `webgpu` by name accepts it), else, as the
// synchronous 'auto' does, the first host backend that loads, else the oracle with one line on
// stderr saying so. LLAMA_ADAPTER_BACKEND and LLAMA_ADAPTER_THREADS set the defaults.

import type { Backend, BackendId } from './backend.js';
import { createTsBackend } from './ts/index.js';
import { LlamaAdapterError } from '../core/errors.js';
import { loadNativeBackend } from './native.js';
import { loadWebGpuBackend } from './webgpu/index.js';

export type { Backend } from './backend.js';

type Loaded = { backend: Backend | null; error: string };

export interface BackendEntry {
  /** A backend with `threads` threads (ignored where it has none), or null and the reason. Never throws. */
  load(threads?: number): Loaded;
  /**
   * A backend that can only start asynchronously (a device): `load` then says so, and this starts
   * it. allowSoftware: accept a software device (asked for by name, not by 'auto'). Never throws.
   */
  loadAsync?(allowSoftware: boolean): Promise<Loaded>;
  /** The reference implementation the others are tested against (exactly one entry). */
  oracle?: boolean;
}

const ASYNC_ONLY = 'it starts asynchronously: use getBackendAsync() or loadModel(path, { backend })';

/** The registered backends, in the order 'auto' tries them. */
export const backends = {
  webgpu: { load: () => ({ backend: null, error: ASYNC_ONLY }), loadAsync: loadWebGpuBackend },
  native: { load: loadNativeBackend },
  ts: { load: () => ({ backend: createTsBackend(), error: '' }), oracle: true },
} satisfies Record<BackendId, BackendEntry>;

export type { BackendId } from './backend.js';
export type BackendName = BackendId | 'auto';
/** Every name getBackend accepts (the registry's, then 'auto'): the CLI's --backend choices. */
export const backendNames = [...(Object.keys(backends) as BackendId[]), 'auto'] as const satisfies readonly BackendName[];

const ids = Object.keys(backends) as BackendId[];
const entry = (id: BackendId): BackendEntry => backends[id];
/** The oracle's registry name. */
export const oracleId: BackendId = ids.find((id) => entry(id).oracle) ?? 'ts';

const cache = new Map<string, Backend>();
let warned = false;

export function getBackend(name: BackendName = (process.env.LLAMA_ADAPTER_BACKEND as BackendName) || 'auto', threads?: number): Backend {
  if (name !== 'auto' && !ids.includes(name)) {
    throw new LlamaAdapterError(`unknown backend "${String(name)}" (expected ${[...ids, 'auto'].join(', ')})`);
  }
  const envThreads = Number(process.env.LLAMA_ADAPTER_THREADS) || undefined;
  const nThreads = threads ?? envThreads;
  const key = `${name}:${nThreads ?? ''}`;
  const hit = cache.get(key);
  if (hit) return hit;
  let b: Backend | null = null;
  if (name !== 'auto') {
    const r = entry(name).load(nThreads);
    if (!r.backend) throw new LlamaAdapterError(`${name} backend unavailable: ${r.error}`);
    b = r.backend;
  } else {
    const errors: string[] = [];
    for (const id of ids) {
      if (entry(id).oracle || entry(id).loadAsync) continue;
      const r = entry(id).load(nThreads);
      if (r.backend) {
        b = r.backend;
        break;
      }
      errors.push(`${id} backend unavailable (${r.error})`);
    }
    if (!b) {
      if (!warned) process.stderr.write(`llama-adapter: ${errors.join('; ')}; using the TypeScript backend\n`);
      warned = true;
      b = entry(oracleId).load(nThreads).backend as Backend;
    }
  }
  cache.set(key, b);
  return b;
}

/**
 * getBackend for every backend, device backends included: 'webgpu' (any adapter, SwiftShader too),
 * or 'auto' = webgpu on a hardware adapter, else what getBackend('auto') takes.
 */
export async function getBackendAsync(name: BackendName = (process.env.LLAMA_ADAPTER_BACKEND as BackendName) || 'auto', threads?: number): Promise<Backend> {
  if (name !== 'auto' && !ids.includes(name)) return getBackend(name, threads); // its error
  const dev = name === 'auto' ? ids.filter((id) => entry(id).loadAsync) : entry(name).loadAsync ? [name] : [];
  for (const id of dev) {
    const r = await entry(id).loadAsync!(name !== 'auto');
    if (r.backend) return r.backend;
    if (name !== 'auto') throw new LlamaAdapterError(`${name} backend unavailable: ${r.error}`);
  }
  return getBackend(name, threads);
}
