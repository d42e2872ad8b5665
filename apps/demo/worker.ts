// The demo's parallel jobs. The TypeScript backend computes on one thread, so on a machine with
// two or more cores the demo samples stories in two halves and trains its two adapters (zero-init
// and random-init gates) at the same time, each job in a worker thread with its own copy of the
// model. Results are the same as running the jobs one after another (seeds fix everything).
// This file is both the worker's entry point and the main thread's helper to start one.

import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import type { BackendName } from '../../src/backend/index.js';
import { LlamaAdapterError } from '../../src/core/errors.js';
import { loadModel } from '../../src/model/load.js';
import { finetune, type EpochReport, type FinetuneOptions, type FinetuneProgress } from '../../src/train/finetune.js';
import { sampleStories, type SampleStoriesOptions, type SampledStory } from './stories.js';

/** Finetune options a worker can receive (no model, no callbacks, records only). */
export type TrainJobOptions = Omit<FinetuneOptions, 'model' | 'data' | 'onProgress' | 'onEpoch' | 'signal'> & { data: FinetuneOptions['data'] };

export type Job =
  | { kind: 'sample'; modelPath: string; backend: BackendName; threads?: number; options: Omit<SampleStoriesOptions, 'onBatch'> }
  | { kind: 'train'; modelPath: string; backend: BackendName; threads?: number; options: TrainJobOptions };

export interface TrainJobResult {
  steps: number;
  losses: number[];
  valLosses: EpochReport[];
}

type Message =
  | { type: 'batch'; done: number; total: number }
  | { type: 'progress'; p: FinetuneProgress }
  | { type: 'epoch'; e: EpochReport }
  | { type: 'result'; value: SampledStory[] | TrainJobResult }
  | { type: 'error'; message: string; user: boolean };

export interface JobCallbacks {
  onBatch?: (done: number, total: number) => void;
  onProgress?: (p: FinetuneProgress) => void;
  onEpoch?: (e: EpochReport) => void;
}

/** Run a job in a worker thread; resolves to its result. */
export function runJob(job: Extract<Job, { kind: 'sample' }>, cb?: JobCallbacks): Promise<SampledStory[]>;
export function runJob(job: Extract<Job, { kind: 'train' }>, cb?: JobCallbacks): Promise<TrainJobResult>;
export function runJob(job: Job, cb: JobCallbacks = {}): Promise<SampledStory[] | TrainJobResult> {
  return new Promise((resolve, reject) => {
    const w = new Worker(new URL(import.meta.url), { workerData: job });
    let settled = false;
    w.on('message', (m: Message) => {
      if (m.type === 'batch') cb.onBatch?.(m.done, m.total);
      else if (m.type === 'progress') cb.onProgress?.(m.p);
      else if (m.type === 'epoch') cb.onEpoch?.(m.e);
      else if (m.type === 'result') {
        settled = true;
        resolve(m.value);
      } else {
        settled = true;
        reject(m.user ? new LlamaAdapterError(m.message) : new Error(m.message));
      }
    });
    w.on('error', (e) => {
      settled = true;
      reject(e);
    });
    w.on('exit', (code) => {
      if (!settled) reject(new Error(`demo worker exited with code ${code} before finishing its ${job.kind} job`));
    });
  });
}

async function work(job: Job, post: (m: Message) => void): Promise<void> {
  const model = await loadModel(job.modelPath, { backend: job.backend, threads: job.threads });
  if (job.kind === 'sample') {
    const value = await sampleStories(model, { ...job.options, onBatch: (done, total) => post({ type: 'batch', done, total }) });
    post({ type: 'result', value });
  } else {
    const r = await finetune({
      ...job.options,
      model,
      onProgress: (p) => post({ type: 'progress', p }),
      onEpoch: (e) => post({ type: 'epoch', e }),
    });
    post({ type: 'result', value: { steps: r.steps, losses: r.losses, valLosses: r.valLosses } });
  }
}

if (!isMainThread && parentPort && (workerData as Job | undefined)?.kind) {
  const port = parentPort;
  const post = (m: Message): void => port.postMessage(m);
  work(workerData as Job, post).catch((e: unknown) => {
    post({ type: 'error', message: e instanceof Error ? e.message : String(e), user: e instanceof LlamaAdapterError });
  });
}
