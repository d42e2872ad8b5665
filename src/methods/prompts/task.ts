// A task method: prompts in the top L layers (prompt-tuning.ts: gated tanh / raw, or the vpt
// baseline), or none (a linear probe), plus a trainable task head (heads.ts), over any backbone
// (backbones.ts). It is one AdapterMethod: `isParam` (prompts, gates, head tensors) is the one filter
// for what trains, what the optimizer and checkpoints hold and what the file stores; the model sees
// only its prompt source through the attention hook. taskStep runs one batch: features, head, loss,
// and with gradients: head backward, then the backbone's backward to the hook and paramGrads.

import { check } from '../../core/errors.js';
import type { AdapterMethod, PromptLayer, PromptSource, SourceGrads } from '../../model/method.js';
import type { Backbone } from './backbones.js';
import { crossEntropyMean, type HeadKind, initHead, LinearTaskHead, RobertaClassifierHead, spanLoss, type TaskHead } from './heads.js';
import { type CreatePromptsOptions, createPrompts, type PromptTuning } from './prompt-tuning.js';

export type TaskKind = 'image-classification' | 'text-classification' | 'question-answering';
export const TASK_KINDS: readonly TaskKind[] = ['image-classification', 'text-classification', 'question-answering'];

export class TaskMethod implements AdapterMethod<object> {
  /** Free-form provenance saved in the file (training arguments). */
  meta: Record<string, string> = {};

  constructor(
    readonly host: object,
    readonly prompts: PromptTuning<object> | null, // null: a linear probe
    readonly head: TaskHead,
    readonly task: TaskKind,
    readonly labels: readonly string[], // class names (classification), [] for spans
    private readonly nLayers: number,
  ) {}

  /** What the model's attention hook is given: the prompts, or nothing (a probe). */
  get source(): PromptSource<object> | null {
    return this.prompts;
  }

  get firstLayer(): number {
    return this.prompts?.firstLayer ?? this.nLayers;
  }

  get promptLength(): number {
    return this.prompts?.promptLength ?? 0;
  }

  promptLayer(l: number): PromptLayer | null {
    return this.prompts?.promptLayer(l) ?? null;
  }

  tensors(): Map<string, Float32Array> {
    return new Map([...(this.prompts?.tensors() ?? []), ...this.head.tensors()]);
  }

  isParam(name: string): boolean {
    return this.head.tensors().has(name) || (this.prompts?.isParam(name) ?? false);
  }

  shapeOf(name: string): number[] {
    return this.head.tensors().has(name) ? this.head.shapeOf(name) : this.prompts!.shapeOf(name);
  }

  invalidate(): void {
    this.prompts?.invalidate();
  }

  /** Prompt and gate gradients from the hook (the head's come from taskStep). */
  paramGrads(hook: readonly SourceGrads<object>[], out: Map<string, Float32Array>): void {
    if (this.prompts) this.prompts.paramGrads(hook, out);
  }

  /** Trainable parameter count. */
  get parameterCount(): number {
    let n = 0;
    for (const [name, t] of this.tensors()) if (this.isParam(name)) n += t.length;
    return n;
  }
}

export interface CreateTaskOptions {
  task: TaskKind;
  labels?: readonly string[]; // classification: the class names (their count sizes the head)
  prompts: Omit<CreatePromptsOptions, 'seed'> | null; // null: linear probe
  head?: HeadKind; // default: 'roberta-classifier' for RoBERTa text classification, 'linear' otherwise
  seed?: number; // prompts and head initialisation
  /** Start the head from the checkpoint's own (same shape): ViT classifier, RoBERTa qa_outputs / classifier. */
  headFrom?: Map<string, Float32Array>;
}

/** A new task method over a backbone: prompts as createPrompts makes them (or none), a fresh head (or a copy of headFrom). */
export function createTaskMethod(bb: Backbone<unknown>, o: CreateTaskOptions): TaskMethod {
  const C = bb.width;
  const labels = o.labels ?? [];
  if (o.task !== 'question-answering') check(labels.length >= 2, `${o.task} needs at least 2 labels (got ${labels.length})`);
  const kind = o.head ?? (bb.arch === 'roberta' && o.task === 'text-classification' ? 'roberta-classifier' : 'linear');
  const head: TaskHead =
    o.task === 'question-answering'
      ? new LinearTaskHead('qa_outputs', C, 2)
      : kind === 'roberta-classifier'
        ? new RobertaClassifierHead(C, labels.length)
        : new LinearTaskHead('classifier', C, labels.length);
  initHead(head, ((o.seed ?? 0) * 31 + 7) >>> 0);
  if (o.headFrom)
    for (const [name, t] of head.tensors()) {
      const src = o.headFrom.get(name);
      check(src !== undefined && src.length === t.length, `the checkpoint's head has no "${name}" of ${t.length} values`);
      t.set(src);
    }
  const prompts = o.prompts ? createPrompts<object>(bb.host, bb.view, { ...o.prompts, seed: o.seed ?? 0 }) : null;
  return new TaskMethod(bb.host, prompts, head, o.task, labels, bb.view.attnShape.layers);
}

/** Targets of a batch: class ids (classification) or span start/end token positions (B rows of T). */
export type TaskTargets = { labels: Int32Array } | { starts: Int32Array; ends: Int32Array; B: number; T: number };

/**
 * One batch through backbone and head: the head's outputs (n, outputs) and the mean loss; with
 * `grads` (keyed like trainableTensors(m), overwritten) also the gradients of every parameter.
 */
export function taskStep<In>(
  bb: Backbone<In>,
  m: TaskMethod,
  x: In,
  targets: TaskTargets,
  grads: Map<string, Float32Array> | null,
): { loss: number; out: Float32Array; n: number } {
  const be = bb.view.backend;
  const train = grads !== null;
  const { feats, n } = bb.features(x, m.source, train && m.prompts !== null);
  const out = m.head.forward(be, feats, n);
  let loss: number, dOut: Float32Array;
  if ('labels' in targets) {
    check(targets.labels.length === n, `taskStep: ${targets.labels.length} labels for ${n} rows`);
    ({ loss, dlogits: dOut } = crossEntropyMean(be, out, targets.labels, n, m.head.outputs));
  } else {
    check(targets.B * targets.T === n, `taskStep: span targets for ${targets.B} x ${targets.T} tokens, features of ${n}`);
    ({ loss, dOut } = spanLoss(be, out, targets.B, targets.T, targets.starts, targets.ends));
  }
  if (grads) {
    const dFeats = m.head.backward(be, dOut, grads);
    if (m.prompts) m.paramGrads([bb.backward(dFeats) as SourceGrads<object>], grads);
  }
  return { loss, out, n };
}
