// --profile: a Backend wrapper that times every kernel call, to show where a bench kind spends
// its time (printed to stderr, one table per kind; training shares leave out the warm-up step,
// prefill and decode shares include their warm-up runs).

import type { Backend } from '../src/backend/backend.js';

export class KernelProfile {
  private readonly acc = new Map<string, { calls: number; seconds: number }>();

  /** The same backend, with every method call timed into this profile. */
  wrap(be: Backend): Backend {
    const acc = this.acc;
    return new Proxy(be, {
      get(target, prop, receiver) {
        const v: unknown = Reflect.get(target, prop, receiver);
        if (typeof v !== 'function' || typeof prop !== 'string') return v;
        const fn = v as (...args: unknown[]) => unknown;
        return (...args: unknown[]): unknown => {
          const t0 = performance.now();
          const r = fn.apply(target, args);
          const e = acc.get(prop) ?? { calls: 0, seconds: 0 };
          e.calls++;
          e.seconds += (performance.now() - t0) / 1000;
          acc.set(prop, e);
          return r;
        };
      },
    });
  }

  reset(): void {
    this.acc.clear();
  }

  /** Kernels by time, with their share of the kernel total. */
  table(title: string): string {
    const rows = [...this.acc].sort((a, b) => b[1].seconds - a[1].seconds);
    const total = rows.reduce((s, [, e]) => s + e.seconds, 0);
    const lines = [`profile ${title}: ${total.toFixed(3)} s in kernels`];
    for (const [k, e] of rows) {
      lines.push(
        `  ${k.padEnd(20)} ${e.seconds.toFixed(3).padStart(9)} s ${(total ? (100 * e.seconds) / total : 0).toFixed(1).padStart(5)}% ${String(e.calls).padStart(8)} calls`,
      );
    }
    return lines.join('\n');
  }
}
