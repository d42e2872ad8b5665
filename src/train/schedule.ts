// Learning-rate schedule of the official LLaMA-Adapter training: linear warmup (in epochs or
// steps), then a half-cycle cosine from the peak to minLr, evaluated per optimizer step on the
// fractional epoch (as the official `adjust_learning_rate`).

export interface ScheduleOptions {
  peakLr: number; // lr after warmup
  minLr: number; // lr at the end (default 0)
  totalSteps: number; // optimizer steps in the run
  warmupSteps: number; // optimizer steps of linear warmup
}

/** Learning rate for optimizer step `step` (0-based: the step about to be taken). */
export function learningRate(o: ScheduleOptions, step: number): number {
  if (step < o.warmupSteps) return (o.peakLr * step) / o.warmupSteps;
  const span = Math.max(1, o.totalSteps - o.warmupSteps);
  const t = Math.min(1, (step - o.warmupSteps) / span);
  return o.minLr + (o.peakLr - o.minLr) * 0.5 * (1 + Math.cos(Math.PI * t));
}

/** Peak lr from an absolute lr or from the paper's base lr: blr x effective batch / 256. */
export function peakLearningRate(o: { lr?: number; blr?: number; effectiveBatch: number }): number {
  if (o.lr !== undefined) return o.lr;
  return ((o.blr ?? 9e-3) * o.effectiveBatch) / 256;
}
