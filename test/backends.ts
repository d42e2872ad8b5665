// Which backends the backend-parametrised suites run on: LLAMA_ADAPTER_TEST_BACKENDS="ts,native"
// or, by default, every registered backend that loads (src/backend/index.ts), the oracle first.
// backendsUnderTest() gives the host backends (for suites on the synchronous API);
// allBackendsUnderTest() adds the device ones that start here (webgpu: SwiftShader without a GPU).

import { backends, getBackend, oracleId, type BackendEntry, type BackendId } from '../src/backend/index.js';

export function backendsUnderTest(): BackendId[] {
  const env = process.env.LLAMA_ADAPTER_TEST_BACKENDS;
  if (env) return env.split(',').map((s) => s.trim()) as BackendId[];
  const others = (Object.keys(backends) as BackendId[]).filter((id) => id !== oracleId && backends[id].load().backend);
  return [oracleId, ...others];
}

export async function allBackendsUnderTest(): Promise<BackendId[]> {
  const env = process.env.LLAMA_ADAPTER_TEST_BACKENDS;
  if (env) return env.split(',').map((s) => s.trim()) as BackendId[];
  const ids: BackendId[] = [...backendsUnderTest()];
  for (const id of Object.keys(backends) as BackendId[]) {
    const e: BackendEntry = backends[id];
    if (e.loadAsync && (await e.loadAsync(true)).backend) ids.push(id);
  }
  return ids;
}

export { getBackend };
