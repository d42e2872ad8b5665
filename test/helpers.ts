// Shared test helpers: where ../shared is, and small comparison utilities.
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { packageRoot } from '../src/core/package-root.js';

/** Repository root (tests run from dist/test, sources live in test/). */
export const repoRoot = packageRoot() ?? path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const shared = process.env.LLAMA_ADAPTER_SHARED ?? path.resolve(repoRoot, '../shared');
export const assets = path.join(shared, 'assets');
export const fixtures = path.join(shared, 'fixtures');
export const stories260K = path.join(assets, 'models/stories260K/stories260K.bin');
export const stories260Kq80 = path.join(assets, 'models/stories260K/stories260K_q80.bin');
export const tok512 = path.join(assets, 'models/stories260K/tok512.bin');
export const tinystories656k = path.join(assets, 'models/tinystories-656k');

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

/** Poll the metrics endpoint until a gauge reaches a value (or 5 s pass). */
export async function gauge(url: string, name: string, want?: number): Promise<number> {
  const t0 = Date.now();
  for (;;) {
    const text = await (await fetch(`${url}/metrics`)).text();
    const v = Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1]);
    if (want === undefined || v === want || Date.now() - t0 > 5000) return v;
    await new Promise((r) => setTimeout(r, 20));
  }
}
