// The process a fine-tuning job runs in (forked by jobs.ts; its own process, so its native thread
// pool never meets the server's). It loads the base model as the server did, runs finetune() on
// the job's files with the job's options, and reports every step's progress, every epoch's
// validation loss and the result over IPC. "stop" from the server (cancel, pause, shutdown), the
// server going away, SIGINT or SIGTERM all stop it as Ctrl-C stops `finetune`: the step finishes,
// adapter and checkpoint are written (exact resume), and it exits.

import { loadModel } from '../model/load.js';
import { readInstructionData } from '../train/finetune.js';
import { finetune } from '../train/finetune.js';
import type { WorkerMessage, WorkerSpec } from './jobs.js';

const ac = new AbortController();
const stop = (): void => ac.abort();
process.on('disconnect', stop);
process.on('SIGINT', stop);
process.on('SIGTERM', stop);

function send(m: WorkerMessage): Promise<void> {
  return new Promise((resolve) => {
    if (!process.connected || !process.send) resolve();
    else process.send(m, undefined, {}, () => resolve());
  });
}

async function run(spec: WorkerSpec): Promise<void> {
  const model = await loadModel(spec.modelPath, spec.load);
  const val = spec.validationFile ? readInstructionData(spec.validationFile) : [];
  const train = readInstructionData(spec.trainingFile);
  const r = await finetune({
    ...spec.options,
    model,
    data: [...val, ...train],
    dataName: spec.dataName,
    valSize: spec.validationFile ? val.length : spec.options.valSize,
    signal: ac.signal,
    onProgress: (p) => void send({ type: 'progress', p }),
    onEpoch: (e) => void send({ type: 'epoch', e }),
  });
  await send({ type: 'done', steps: r.steps, aborted: r.aborted, trainTokens: r.trainTokens });
}

process.on('message', (m: { type: 'start'; spec: WorkerSpec } | { type: 'stop' }) => {
  if (m.type === 'stop') stop();
  else
    run(m.spec)
      .catch((e: unknown) => send({ type: 'error', message: e instanceof Error ? e.message : String(e) }))
      .finally(() => process.disconnect?.());
});
