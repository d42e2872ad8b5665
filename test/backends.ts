// Which backends the backend-parametrised suites run on: LLAMA_ADAPTER_TEST_BACKENDS="ts,native"
// or, by default, ts plus native when the addon loads (the TS backend is the oracle).

import { getBackend, type BackendName } from '../src/backend/index.js';
import { loadNativeBackend } from '../src/backend/native.js';

export function backendsUnderTest(): Exclude<BackendName, 'auto'>[] {
  const env = process.env.LLAMA_ADAPTER_TEST_BACKENDS;
  if (env) return env.split(',').map((s) => s.trim()) as Exclude<BackendName, 'auto'>[];
  const out: Exclude<BackendName, 'auto'>[] = ['ts'];
  if (loadNativeBackend().backend) out.push('native');
  return out;
}

export { getBackend };
