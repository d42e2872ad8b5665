// Fine-tuning jobs (OpenAI's /v1/fine_tuning/jobs): one at a time, each in a child process
// (finetune-worker.ts) while the server goes on serving. A job's files live in
// DATA_DIR/jobs/<id>/: job.json (the job object), events.jsonl (its events, oldest first), and
// finetune's own adapter.safetensors, adapter.ckpt.safetensors (checkpoint), adapter.metrics.jsonl
// and adapter.loss.svg. Events are the progress the training loop reports (a metrics event per
// step, one per epoch with the validation loss) and status changes; listeners get them live (SSE).
// Pause, a server shutdown and a crash leave a checkpoint; the job continues from it exactly (a
// shutdown's or crash's job is queued again when the server next starts). A succeeded job's adapter
// is served under its fine_tuned_model, `ft:<base>[:<suffix>]:<8 hex of the job id>`. A data
// directory may hold jobs of several base models: a server sees only those of its own base.

import { type ChildProcess, fork } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LlamaConfig } from '../core/config.js';
import { mkdirs, writeFileAtomic } from '../core/fs.js';
import type { GateMode } from '../methods/v1/gate.js';
import type { LoadModelOptions } from '../model/load.js';
import type { EpochReport, FinetuneOptions, FinetuneProgress } from '../train/finetune.js';
import type { PromptStyleName } from '../train/prompt-styles.js';
import { ApiError, badParam } from './errors.js';
import { type FileStore, readJson } from './files.js';
import type { JobCreateBody, JobHyperparametersBody } from './schemas.js';

const WORKER = fileURLToPath(new URL('./finetune-worker.js', import.meta.url));
/** The base lr a learning_rate_multiplier of 1 means (finetune's default --blr: peak = blr x batch / 256). */
const BASE_BLR = 9e-3;

export type JobStatus = 'validating_files' | 'queued' | 'running' | 'paused' | 'succeeded' | 'failed' | 'cancelled';
const ACTIVE: readonly JobStatus[] = ['validating_files', 'queued', 'running'];

export interface JobHyperparameters {
  n_epochs: number;
  batch_size: number;
  learning_rate_multiplier: number; // peak lr = multiplier x 9e-3 x batch_size / 256
  prompt_length: number; // K (ours)
  adapter_layers: number; // L (ours)
  gate: GateMode; // gate convention (ours)
  prompt_style: PromptStyleName; // training template (ours)
  validation_size: number; // records of the training file held out for validation loss (ours; 0 with a validation_file)
}

export interface FineTuningJob {
  id: string; // "ftjob-<24 hex>"
  object: 'fine_tuning.job';
  created_at: number;
  finished_at: number | null;
  model: string; // the base model's id
  fine_tuned_model: string | null; // the adapter's model id once succeeded
  organization_id: string;
  result_files: string[];
  status: JobStatus;
  training_file: string;
  validation_file: string | null;
  hyperparameters: JobHyperparameters;
  method: { type: 'supervised'; supervised: { hyperparameters: JobHyperparameters } };
  trained_tokens: number | null;
  error: { code: string; message: string; param: string | null } | null;
  seed: number;
  estimated_finish: number | null;
  integrations: [];
  metadata: Record<string, string> | null;
  user_provided_suffix: string | null;
  base_fingerprint: string; // the base model's weight fingerprint (ours: a server over another base leaves the job alone)
}

export interface JobEvent {
  id: string; // "ftevent-<24 hex>"
  object: 'fine_tuning.job.event';
  created_at: number;
  level: 'info' | 'warn' | 'error';
  message: string;
  type: 'message' | 'metrics';
  data: Record<string, unknown>;
}

/** What the worker process is given (JSON over IPC). */
export interface WorkerSpec {
  modelPath: string;
  load: LoadModelOptions;
  trainingFile: string;
  validationFile: string | null; // its records are the validation split (else options.valSize records of the training file)
  dataName: string;
  options: Omit<FinetuneOptions, 'model' | 'data' | 'dataName' | 'adapter' | 'signal' | 'onProgress' | 'onEpoch'>;
}

export type WorkerMessage =
  | { type: 'progress'; p: FinetuneProgress }
  | { type: 'epoch'; e: EpochReport }
  | { type: 'done'; steps: number; aborted: boolean; trainTokens: number }
  | { type: 'error'; message: string };

export interface JobsOptions {
  dir: string; // DATA_DIR/jobs
  files: FileStore;
  modelPath: string;
  load: LoadModelOptions; // how the worker loads the base (as the server did)
  baseName: string;
  fingerprint: string; // the base model's weight fingerprint
  config: LlamaConfig;
  /** Serve a succeeded job's adapter under job.fine_tuned_model (throws if it cannot). */
  serve(job: FineTuningJob, adapterFile: string): void;
}

interface JobState {
  job: FineTuningJob;
  events: JobEvent[]; // oldest first
  listeners: Set<(e: JobEvent | null) => void>; // null: the job has stopped (no more events)
  step: number; // latest step reported
}

const now = (): number => Math.floor(Date.now() / 1000);

export class Jobs {
  private readonly byId = new Map<string, JobState>();
  private running: { st: JobState; child: ChildProcess; stderr: string; exited: Promise<void> } | null = null;
  private closed = false;

  constructor(private readonly o: JobsOptions) {
    if (!fs.existsSync(o.dir)) return;
    for (const id of fs.readdirSync(o.dir)) {
      const file = path.join(o.dir, id, 'job.json');
      if (!fs.existsSync(file)) continue;
      const job = readJson<FineTuningJob>(file, 'fine-tuning job');
      if (job.base_fingerprint !== o.fingerprint) continue; // trained on another base model: not this server's
      const evFile = path.join(o.dir, id, 'events.jsonl');
      const events = fs.existsSync(evFile)
        ? fs
            .readFileSync(evFile, 'utf8')
            .split('\n')
            .filter((l) => l.trim())
            .flatMap((l) => {
              try {
                return [JSON.parse(l) as JobEvent];
              } catch {
                return []; // a line cut by a crash
              }
            })
        : [];
      const st: JobState = { job, events, listeners: new Set(), step: 0 };
      this.byId.set(job.id, st);
      if (job.status === 'running' || job.status === 'validating_files') {
        job.status = 'queued'; // the server stopped without saying so (a crash): continue from the checkpoint
        this.event(st, 'The server restarted during training; the job continues from its last checkpoint', 'warn', { status: 'queued' });
        this.save(st);
      }
      if (job.status === 'succeeded' && job.fine_tuned_model) {
        try {
          o.serve(job, this.adapterFile(job.id));
        } catch (e) {
          this.event(st, `The fine-tuned model could not be loaded: ${(e as Error).message}`, 'warn');
        }
      }
    }
  }

  /** Start the queued jobs (call once the server listens). */
  start(): void {
    this.next();
  }

  get(id: string): FineTuningJob {
    return this.state(id).job;
  }

  /** Newest first, after the job `after` (a cursor), at most `limit`. */
  list(after: string | undefined, limit: number): { data: FineTuningJob[]; has_more: boolean } {
    const all = [...this.byId.values()].map((s) => s.job).sort((a, b) => b.created_at - a.created_at || (a.id < b.id ? 1 : -1));
    return page(all, after, limit);
  }

  /** Events newest first, after the event `after`, at most `limit` (OpenAI's order). */
  listEvents(id: string, after: string | undefined, limit: number): { data: JobEvent[]; has_more: boolean } {
    return page([...this.state(id).events].reverse(), after, limit);
  }

  /** Every event so far (oldest first), then each new one; `onEvent(null)` when the job has stopped. Returns unsubscribe. */
  subscribe(id: string, onEvent: (e: JobEvent | null) => void): () => void {
    const st = this.state(id);
    for (const e of st.events) onEvent(e);
    if (!ACTIVE.includes(st.job.status)) {
      onEvent(null);
      return () => {};
    }
    st.listeners.add(onEvent);
    return () => st.listeners.delete(onEvent);
  }

  create(b: JobCreateBody): FineTuningJob {
    if (this.closed) throw new ApiError(503, 'The server is shutting down', 'server_error');
    if (b.model !== this.o.baseName)
      throw badParam('model', `fine-tuning starts from the base model '${this.o.baseName}' (got '${b.model}')`, 'model_not_available');
    const train = this.o.files.get(b.training_file);
    if (!train) throw badParam('training_file', `no uploaded file with id '${b.training_file}'`, 'file_not_found');
    const val = b.validation_file ? this.o.files.get(b.validation_file) : null;
    if (b.validation_file && !val) throw badParam('validation_file', `no uploaded file with id '${b.validation_file}'`, 'file_not_found');
    if (b.hyperparameters && b.method?.supervised?.hyperparameters)
      throw badParam('hyperparameters', 'give hyperparameters either at the top level or in method.supervised, not both');
    const h = this.hyperparameters(b.hyperparameters ?? b.method?.supervised?.hyperparameters ?? {}, train.records, val !== null);
    const id = this.newId();
    const job: FineTuningJob = {
      id,
      object: 'fine_tuning.job',
      created_at: now(),
      finished_at: null,
      model: b.model,
      fine_tuned_model: null,
      organization_id: 'llama-adapter',
      result_files: [],
      status: 'validating_files',
      training_file: train.id,
      validation_file: val?.id ?? null,
      hyperparameters: h,
      method: { type: 'supervised', supervised: { hyperparameters: h } },
      trained_tokens: null,
      error: null,
      seed: b.seed ?? randomInt(0, 2 ** 31),
      estimated_finish: null,
      integrations: [],
      metadata: b.metadata ?? null,
      user_provided_suffix: b.suffix ?? null,
      base_fingerprint: this.o.fingerprint,
    };
    const st: JobState = { job, events: [], listeners: new Set(), step: 0 };
    mkdirs(this.jobDir(id));
    this.byId.set(id, st);
    this.event(st, `Created fine-tuning job: ${id}`);
    this.event(
      st,
      `Files validated (${train.records} training records${val ? `, ${val.records} validation records` : ''}), moving job to queued state`,
      'info',
      {
        status: 'queued',
      },
    );
    job.status = 'queued';
    this.save(st);
    this.next();
    return job;
  }

  cancel(id: string): FineTuningJob {
    const st = this.state(id);
    const j = st.job;
    if (!ACTIVE.includes(j.status) && j.status !== 'paused')
      throw badParam('id', `job ${id} has already ${j.status === 'succeeded' ? 'succeeded' : j.status}`, 'job_not_cancellable');
    this.finish(st, 'cancelled', 'Fine-tuning job cancelled');
    if (this.running?.st === st) this.running.child.send({ type: 'stop' });
    return j;
  }

  /** Stop a running or queued job with a checkpoint; resume() continues it exactly. */
  pause(id: string): FineTuningJob {
    const st = this.state(id);
    if (st.job.status !== 'running' && st.job.status !== 'queued')
      throw badParam('id', `job ${id} is ${st.job.status}, not running or queued`, 'job_not_pausable');
    this.setStatus(st, 'paused', 'Fine-tuning job paused (its checkpoint is kept; resume continues it)');
    if (this.running?.st === st) this.running.child.send({ type: 'stop' });
    return st.job;
  }

  resume(id: string): FineTuningJob {
    const st = this.state(id);
    if (st.job.status !== 'paused') throw badParam('id', `job ${id} is ${st.job.status}, not paused`, 'job_not_paused');
    this.setStatus(st, 'queued', 'Fine-tuning job resumed, moving job to queued state');
    this.next();
    return st.job;
  }

  /** Stop the running job with a checkpoint (it is queued again at the next start); waits up to `deadlineMs`, then kills it. */
  async close(deadlineMs: number): Promise<void> {
    this.closed = true;
    const r = this.running;
    if (!r) return;
    if (r.st.job.status === 'running')
      this.setStatus(
        r.st,
        'queued',
        'The server is stopping: the job stops after this step and continues from its checkpoint when the server starts again',
        'warn',
      );
    r.child.send({ type: 'stop' });
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((res) => {
      timer = setTimeout(() => res('late'), deadlineMs);
    });
    if ((await Promise.race([r.exited, late])) === 'late') r.child.kill('SIGKILL');
    clearTimeout(timer);
    await r.exited;
  }

  /** A job not yet finished (it may still read the file) that trains on file `fileId`. */
  unfinishedUserOf(fileId: string): FineTuningJob | undefined {
    return [...this.byId.values()]
      .map((s) => s.job)
      .find((j) => (j.training_file === fileId || j.validation_file === fileId) && (ACTIVE.includes(j.status) || j.status === 'paused'));
  }

  adapterFile(id: string): string {
    return path.join(this.jobDir(id), 'adapter.safetensors');
  }

  // ------------------------------------------------------------------ internals

  private state(id: string): JobState {
    const st = this.byId.get(id);
    if (!st) throw new ApiError(404, `No fine-tuning job with id '${id}'`, 'not_found_error', 'id', 'job_not_found');
    return st;
  }

  private newId(): string {
    for (;;) {
      const id = `ftjob-${randomBytes(12).toString('hex')}`;
      if (![...this.byId.keys()].some((k) => k.slice(6, 14) === id.slice(6, 14))) return id; // fine_tuned_model uses 8 hex
    }
  }

  private jobDir(id: string): string {
    return path.join(this.o.dir, id);
  }

  private hyperparameters(h: JobHyperparametersBody, records: number, hasValFile: boolean): JobHyperparameters {
    const c = this.o.config;
    const auto = <T>(v: T | 'auto' | undefined, d: T): T => (v === undefined || v === 'auto' ? d : v);
    const r: JobHyperparameters = {
      n_epochs: auto(h.n_epochs, 5),
      batch_size: auto(h.batch_size, 4),
      learning_rate_multiplier: auto(h.learning_rate_multiplier, 1),
      prompt_length: h.prompt_length ?? 10,
      adapter_layers: h.adapter_layers ?? Math.min(30, c.nLayers),
      gate: h.gate ?? 'tanh-per-head',
      prompt_style: h.prompt_style ?? 'alpaca',
      validation_size: hasValFile ? 0 : (h.validation_size ?? Math.min(200, Math.floor(records / 10))),
    };
    if (r.adapter_layers > c.nLayers)
      throw badParam('hyperparameters.adapter_layers', `adapter_layers is ${r.adapter_layers}; the model has ${c.nLayers} layers`);
    if (r.prompt_length >= c.maxSeqLen)
      throw badParam('hyperparameters.prompt_length', `prompt_length is ${r.prompt_length}; the model's context is ${c.maxSeqLen} tokens`);
    if (hasValFile && h.validation_size)
      throw badParam('hyperparameters.validation_size', 'validation_size holds records out of the training file: not with a validation_file');
    if (r.validation_size >= records)
      throw badParam(
        'hyperparameters.validation_size',
        `validation_size ${r.validation_size} would leave none of the training file's ${records} records for training`,
      );
    const peak = r.learning_rate_multiplier * BASE_BLR * (r.batch_size / 256);
    if (peak > 1) throw badParam('hyperparameters.learning_rate_multiplier', `the peak learning rate would be ${peak}, above 1`);
    return r;
  }

  private event(
    st: JobState,
    message: string,
    level: JobEvent['level'] = 'info',
    data: Record<string, unknown> = {},
    type: JobEvent['type'] = 'message',
  ): void {
    const e: JobEvent = { id: `ftevent-${randomBytes(12).toString('hex')}`, object: 'fine_tuning.job.event', created_at: now(), level, message, type, data };
    st.events.push(e);
    try {
      fs.appendFileSync(path.join(this.jobDir(st.job.id), 'events.jsonl'), `${JSON.stringify(e)}\n`);
    } catch {
      // the data directory went away: the event is still served from memory
    }
    for (const f of st.listeners) f(e);
  }

  private save(st: JobState): void {
    writeFileAtomic(path.join(this.jobDir(st.job.id), 'job.json'), JSON.stringify(st.job));
  }

  private setStatus(st: JobState, status: JobStatus, message: string, level: JobEvent['level'] = 'info'): void {
    st.job.status = status;
    if (status !== 'running') st.job.estimated_finish = null;
    this.event(st, message, level, { status });
    this.save(st);
    if (!ACTIVE.includes(status)) {
      for (const f of st.listeners) f(null);
      st.listeners.clear();
    }
  }

  private finish(st: JobState, status: 'succeeded' | 'failed' | 'cancelled', message: string, error: FineTuningJob['error'] = null): void {
    st.job.finished_at = now();
    st.job.error = error;
    this.setStatus(st, status, message, status === 'failed' ? 'error' : 'info');
  }

  private next(): void {
    if (this.running || this.closed) return;
    const st = [...this.byId.values()].filter((s) => s.job.status === 'queued').sort((a, b) => a.job.created_at - b.job.created_at)[0];
    if (st) this.run(st);
  }

  private run(st: JobState): void {
    const j = st.job;
    const h = j.hyperparameters;
    const out = this.adapterFile(j.id);
    const ckpt = out.replace(/\.safetensors$/, '.ckpt.safetensors');
    const resume = fs.existsSync(ckpt) ? ckpt : undefined;
    const spec: WorkerSpec = {
      modelPath: this.o.modelPath,
      load: this.o.load,
      trainingFile: this.o.files.path(j.training_file),
      validationFile: j.validation_file ? this.o.files.path(j.validation_file) : null,
      dataName: j.validation_file ? `${j.validation_file} (validation) + ${j.training_file}` : j.training_file,
      options: {
        out,
        resume,
        promptLength: h.prompt_length,
        adapterLayers: h.adapter_layers,
        gate: h.gate,
        epochs: h.n_epochs,
        batchSize: h.batch_size,
        blr: BASE_BLR * h.learning_rate_multiplier,
        valSize: h.validation_size,
        promptStyle: h.prompt_style,
        seed: j.seed,
      },
    };
    const child = fork(WORKER, [], { execArgv: [], stdio: ['ignore', 'ignore', 'pipe', 'ipc'], serialization: 'json' });
    const r = { st, child, stderr: '', exited: new Promise<void>((res) => child.once('exit', () => res())) };
    this.running = r;
    child.stderr?.on('data', (d: Buffer) => {
      r.stderr = (r.stderr + d.toString()).slice(-2000);
    });
    child.on('message', (m: WorkerMessage) => this.onWorker(st, m));
    child.once('exit', (code, signal) => {
      this.running = null;
      if (st.job.status === 'running') {
        const why = r.stderr.trim().split('\n').at(-1) ?? '';
        this.finish(st, 'failed', 'The training process stopped unexpectedly', {
          code: 'worker_exited',
          message: `the training process exited (${signal ?? `code ${code}`})${why ? `: ${why}` : ''}`,
          param: null,
        });
      }
      this.next();
    });
    this.setStatus(st, 'running', resume ? 'Fine-tuning job resumed from its checkpoint' : 'Fine-tuning job started');
    child.send({ type: 'start', spec });
  }

  private onWorker(st: JobState, m: WorkerMessage): void {
    const j = st.job;
    if (m.type === 'progress') {
      const p = m.p;
      st.step = p.step;
      j.estimated_finish = now() + Math.round(p.etaS);
      const data = {
        step: p.step,
        total_steps: p.totalSteps,
        epoch: p.epoch,
        train_loss: p.loss,
        learning_rate: p.lr,
        grad_norm: p.gradNorm,
        tokens_per_s: p.tokensPerS,
        eta_s: p.etaS,
      };
      this.event(st, `Step ${p.step}/${p.totalSteps}: training loss=${p.loss.toFixed(4)}`, 'info', data, 'metrics');
    } else if (m.type === 'epoch') {
      const v = m.e.valLoss;
      this.event(
        st,
        `Epoch ${m.e.epoch}: validation loss=${v === null ? 'n/a' : v.toFixed(4)}`,
        'info',
        { step: st.step, epoch: m.e.epoch, valid_loss: v },
        'metrics',
      );
    } else if (j.status !== 'running') {
      // cancelled, paused or stopping: the worker's checkpoint is all that was wanted
    } else if (m.type === 'error') {
      this.finish(st, 'failed', `Fine-tuning failed: ${m.message}`, { code: 'training_failed', message: m.message, param: null });
    } else if (m.aborted) {
      this.setStatus(st, 'queued', 'The training process was stopped; the job continues from its checkpoint', 'warn');
    } else {
      j.fine_tuned_model = `ft:${this.o.baseName}${j.user_provided_suffix ? `:${j.user_provided_suffix}` : ''}:${j.id.slice(6, 14)}`;
      j.trained_tokens = m.trainTokens * j.hyperparameters.n_epochs;
      try {
        this.o.serve(j, this.adapterFile(j.id));
      } catch (e) {
        j.fine_tuned_model = null;
        this.finish(st, 'failed', 'The fine-tuned adapter could not be served', { code: 'adapter_not_served', message: (e as Error).message, param: null });
        return;
      }
      this.finish(st, 'succeeded', `The job has successfully completed: ${m.steps} steps; the model is ${j.fine_tuned_model}`);
    }
  }
}

/** A cursor page of `all` (in list order): the items after the one whose id is `after`. */
function page<T extends { id: string }>(all: T[], after: string | undefined, limit: number): { data: T[]; has_more: boolean } {
  const at = after === undefined ? -1 : all.findIndex((x) => x.id === after);
  if (after !== undefined && at < 0) throw badParam('after', `no item with id '${after}' in this list`);
  const start = at + 1;
  const data = all.slice(start, start + limit);
  return { data, has_more: start + limit < all.length };
}
