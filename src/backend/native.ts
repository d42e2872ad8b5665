// Loader for the native N-API backend (native/). Until the addon is built this reports why it
// is unavailable, and getBackend('auto') falls back to the TypeScript backend.

import type { Backend } from './backend.js';

export function loadNativeBackend(_threads?: number): { backend: Backend | null; error: string } {
  return { backend: null, error: 'the native addon is not built yet' };
}
