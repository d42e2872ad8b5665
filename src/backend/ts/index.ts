// The plain-TypeScript backend: the portable oracle every other backend is tested against. It is
// the union of the kernel groups (linear, attention, rows, loss, encoder), each of which implements its
// Backend methods directly, and block(), composed of those kernels (backend/block.ts).

import type { Backend, Kernels } from '../backend.js';
import { composedBlock } from '../block.js';
import { linearKernels } from './linear.js';
import { attentionKernels } from './attention.js';
import { rowKernels } from './elementwise.js';
import { lossKernels } from './loss.js';
import { encoderKernels } from './encoder.js';
import { hostMemory } from '../memory.js';

/** A TypeScript backend (its linear and attention kernels have their own scratch buffers). */
export function createTsBackend(): Backend {
  const be: Backend = {
    name: 'ts',
    threads: 1,
    memory: hostMemory,
    ...linearKernels(),
    ...attentionKernels(),
    ...rowKernels,
    ...lossKernels,
    ...encoderKernels(),
    block: (...a: Parameters<Kernels['block']>) => block(...a),
  };
  const block = composedBlock(be);
  return be;
}
