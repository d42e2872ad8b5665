// Continuous batching over the step-wise engine: sequences wait in a FIFO queue (bounded: a full
// queue is the caller's 429), join the running batch at the next engine step when a slot is free,
// are prefilled in chunks under the engine's per-step token budget while the others keep decoding,
// and leave the moment they finish or their client goes away. Rows with different adapters (and
// none) share each forward. The loop runs one engine step per macrotask, so sockets are served
// between steps.

import { Engine, type EngineRequest, type GenerationPiece, type GenerationResult } from '../generate/engine.js';
import type { LlamaModel } from '../model/model.js';
import type { ServeMetrics } from './metrics.js';

export interface SchedulerOptions {
  maxBatch: number; // engine slots: sequences decoded together
  maxQueue: number; // sequences that may wait for a slot
  prefillChunk: number; // prompt tokens prefilled per step (the step's token budget)
  contextLength?: number; // positions per slot (default: the model's context)
}

/** Where a sequence's output goes. */
export interface SequenceSink {
  piece(p: GenerationPiece): void;
  done(r: GenerationResult): void;
  fail(e: unknown): void; // the engine refused the request (the caller's checks should make this rare)
}

/** One queued or running sequence (one choice of one request). */
export class Sequence {
  slot = -1; // engine slot while running
  state: 'queued' | 'running' | 'done' | 'cancelled' = 'queued';
  lastTokenAt = 0; // performance.now() of its latest token (0 = none yet)

  constructor(
    readonly request: EngineRequest,
    readonly model: string, // the request's model name (metrics label)
    readonly sink: SequenceSink,
    readonly arrivedAt: number, // performance.now() of the HTTP request
  ) {}
}

export class QueueFullError extends Error {}

export class Scheduler {
  readonly engine: Engine;
  private readonly queue: Sequence[] = [];
  private readonly bySlot: (Sequence | null)[];
  private scheduled = false;
  private accepting = true;
  private idleWaiters: (() => void)[] = [];

  constructor(
    model: LlamaModel,
    readonly o: SchedulerOptions,
    private readonly metrics: ServeMetrics,
  ) {
    this.engine = new Engine(model, { slots: o.maxBatch, contextLength: o.contextLength, prefillChunk: o.prefillChunk });
    this.bySlot = new Array<Sequence | null>(o.maxBatch).fill(null);
  }

  get queued(): number {
    return this.queue.length;
  }

  get active(): number {
    return this.engine.active;
  }

  get isAccepting(): boolean {
    return this.accepting;
  }

  /** Queue all sequences of one request, or none of them (QueueFullError). Requests are checked by the caller. */
  submit(seqs: readonly Sequence[]): void {
    if (!this.accepting) throw new QueueFullError('the server is shutting down');
    const room = this.o.maxQueue - this.queue.length + this.engine.free;
    if (seqs.length > room) throw new QueueFullError(`the queue is full (${this.o.maxQueue} waiting sequences)`);
    this.queue.push(...seqs);
    this.metrics.queueLength.set(this.queue.length);
    this.kick();
  }

  /** Drop a sequence (its client went away): out of the queue, or out of its slot at once. */
  cancel(s: Sequence): void {
    if (s.state === 'queued') {
      const i = this.queue.indexOf(s);
      if (i >= 0) this.queue.splice(i, 1);
      this.metrics.queueLength.set(this.queue.length);
    } else if (s.state === 'running') {
      this.engine.evict(s.slot);
      this.bySlot[s.slot] = null;
      this.metrics.activeSlots.set(this.engine.active);
    }
    if (s.state !== 'done') s.state = 'cancelled';
  }

  /** Stop accepting; resolves when every queued and running sequence has finished. */
  drain(): Promise<void> {
    this.accepting = false;
    if (this.engine.active === 0 && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Cancel everything still queued or running (after a shutdown deadline). */
  cancelAll(): void {
    for (const s of [...this.queue, ...this.bySlot]) if (s) this.cancel(s);
    this.wakeIdle();
  }

  /** Schedule a loop turn (`scheduled` stays true until the turn ends, so turns never overlap). */
  private kick(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => void this.loop());
  }

  private admit(): void {
    while (this.queue.length > 0 && this.engine.free > 0) {
      const s = this.queue.shift() as Sequence;
      try {
        s.slot = this.engine.admit(s.request);
      } catch (e) {
        s.state = 'done';
        s.sink.fail(e);
        continue;
      }
      s.state = 'running';
      this.bySlot[s.slot] = s;
      this.metrics.promptTokens.inc({ model: s.model }, s.request.prompt.length);
    }
    this.metrics.queueLength.set(this.queue.length);
  }

  private async loop(): Promise<void> {
    this.admit();
    if (this.engine.active === 0) {
      this.scheduled = false;
      this.metrics.activeSlots.set(0);
      this.wakeIdle();
      return;
    }
    this.metrics.activeSlots.set(this.engine.active);
    this.metrics.batchRows.observe(this.engine.active / this.engine.slots);
    // on a device backend the step waits for its logits; requests come and go meanwhile
    const events = await this.engine.stepAsync();
    // the step's pieces go to sockets next: the backend's worker threads need not spin meanwhile
    this.engine.model.backend.rest?.();
    const now = performance.now();
    for (const e of events) {
      const s = this.bySlot[e.slot];
      if (!s) continue;
      if (e.piece && e.piece.id >= 0) {
        // a sampled token (id -1 is the text flushed at the end)
        if (s.lastTokenAt === 0) this.metrics.ttft.observe({ model: s.model }, (now - s.arrivedAt) / 1000);
        else this.metrics.itl.observe({ model: s.model }, (now - s.lastTokenAt) / 1000);
        s.lastTokenAt = now;
      }
      if (e.piece) s.sink.piece(e.piece);
      if (e.result) {
        this.metrics.generatedTokens.inc({ model: s.model }, e.result.ids.length);
        s.state = 'done';
        this.bySlot[e.slot] = null;
        s.sink.done(e.result);
      }
    }
    this.metrics.activeSlots.set(this.engine.active);
    this.scheduled = false;
    this.kick();
  }

  private wakeIdle(): void {
    if (this.engine.active > 0 || this.queue.length > 0) return;
    const w = this.idleWaiters;
    this.idleWaiters = [];
    for (const f of w) f();
  }
}
