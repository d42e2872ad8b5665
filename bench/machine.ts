// How much of the machine other processes used (they skew timings on a shared box): machine-wide
// busy CPU time from /proc/stat minus our own (or the peer's) CPU time over the same interval, as
// a percent of all cores. Linux only; null elsewhere.

import * as fs from 'node:fs';
import * as os from 'node:os';

const TICK_S = 0.01; // /proc/stat counts USER_HZ = 100 ticks per second on Linux

export interface CpuSnapshot {
  busyS: number; // machine-wide non-idle CPU seconds
  selfS: number; // this process's CPU seconds (user + system)
  wallS: number;
}

function machineBusySeconds(): number | null {
  try {
    const line = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0];
    if (!line.startsWith('cpu ')) return null;
    const t = line.trim().split(/\s+/).slice(1).map(Number);
    const idle = (t[3] ?? 0) + (t[4] ?? 0); // idle + iowait
    return (t.slice(0, 8).reduce((s, v) => s + v, 0) - idle) * TICK_S; // guest time is already in user
  } catch {
    return null;
  }
}

export function cpuSnapshot(): CpuSnapshot | null {
  const busyS = machineBusySeconds();
  if (busyS === null) return null;
  const u = process.cpuUsage();
  return { busyS, selfS: (u.user + u.system) / 1e6, wallS: performance.now() / 1000 };
}

/**
 * Percent of all cores' time used by processes other than us between two snapshots;
 * `excludeS` is further CPU time to discount (a child process we waited for).
 */
export function otherLoadPercent(a: CpuSnapshot | null, b: CpuSnapshot | null, excludeS = 0): number | null {
  if (!a || !b) return null;
  const wall = b.wallS - a.wallS;
  if (wall <= 0) return null;
  const other = b.busyS - a.busyS - (b.selfS - a.selfS) - excludeS;
  return Math.max(0, Math.min(100, Math.round((100 * other) / (wall * os.availableParallelism()))));
}

/** Percent of the machine busy with other processes over the next `ms` milliseconds. */
export async function machineBusyPercent(ms = 500): Promise<number | null> {
  const a = cpuSnapshot();
  await new Promise((r) => setTimeout(r, ms));
  return otherLoadPercent(a, cpuSnapshot());
}

/** Wait (up to maxS seconds) until other processes use under 10% of the machine; returns the last reading. */
export async function waitForIdle(maxS: number, log: (msg: string) => void): Promise<number | null> {
  const until = performance.now() + maxS * 1000;
  let busy = await machineBusyPercent(1000);
  let told = false;
  while (busy !== null && busy >= 10 && performance.now() < until) {
    if (!told) log(`the machine is ${busy}% busy with other processes; waiting up to ${maxS} s for it to calm down`);
    told = true;
    busy = await machineBusyPercent(2000);
  }
  return busy;
}
