// Which backends the backend-parametrised suites run on: LLAMA_ADAPTER_TEST_BACKENDS="ts,native"
// or, by default, every registered backend that loads (src/backend/index.ts), the oracle first.

import { backends, getBackend, oracleId, type BackendId } from '../src/backend/index.js';

export function backendsUnderTest(): BackendId[] {
  const env = process.env.LLAMA_ADAPTER_TEST_BACKENDS;
  if (env) return env.split(',').map((s) => s.trim()) as BackendId[];
  const others = (Object.keys(backends) as BackendId[]).filter((id) => id !== oracleId && backends[id].load().backend);
  return [oracleId, ...others];
}

export { getBackend };
