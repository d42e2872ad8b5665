// The task adapter file: this library's adapter file format (a self-describing .safetensors,
// methods/v1/file.ts) holding a task method's trainable tensors (the one filter: prompts
// `layers.{l}.adaption_prompt`, gates `layers.{l}.adaption_gate`, and the head under its HF names),
// with __metadata__ `method: "task"`, the task, prompt mode (tanh / raw / vpt / none = linear probe),
// K, L, the head kind, the class labels, and the base it was trained on: `base_architecture` (vit /
// roberta / llama), its shape, width / layers / heads and weight fingerprint. Loading onto another
// architecture, shape or (without force) other weights is refused naming both; the LLaMA adapter
// loaders refuse this file by name (methods/v1/file.ts).

import { atFile, check, LlamaAdapterError } from '../../core/errors.js';
import { readSafetensors } from '../../core/safetensors.js';
import { ADAPTER_FORMAT, ADAPTER_VERSION, metaInt, metaJsonObject, readParam, TASK_METHOD, writeMethodFile } from '../v1/file.js';
import type { Backbone } from './backbones.js';
import type { HeadKind } from './heads.js';
import { PROMPT_MODES, type PromptMode } from './prompt-tuning.js';
import { createTaskMethod, TASK_KINDS, type TaskKind, type TaskMethod } from './task.js';

/** A readable description of a backbone's base model (recorded in the file, compared on load). */
export function baseShape(bb: Backbone<unknown>): string {
  const a = bb.view.attnShape;
  return `${bb.arch} D=${a.width} layers=${a.layers} heads=${a.heads} kv_heads=${a.kvHeads}`;
}

export function taskMetadata(m: TaskMethod, bb: Backbone<unknown>): Record<string, string> {
  const a = bb.view.attnShape;
  const md: Record<string, string> = {
    format: ADAPTER_FORMAT,
    version: ADAPTER_VERSION,
    method: TASK_METHOD,
    task: m.task,
    prompt_mode: m.prompts ? m.prompts.config.mode : 'none',
    head: m.head.kind,
    labels: JSON.stringify(m.labels),
    base_architecture: bb.arch,
    base_shape: baseShape(bb),
    base_dim: String(a.width),
    base_layers: String(a.layers),
    base_heads: String(a.heads),
    base_fingerprint: bb.view.fingerprint,
  };
  if (m.prompts) {
    md.prompt_length = String(m.prompts.promptLength);
    md.adapter_layers = String(m.prompts.config.adapterLayers);
    md.first_layer = String(m.prompts.firstLayer);
  }
  for (const [k, v] of Object.entries(m.meta)) if (!(k in md)) md[k] = v;
  return md;
}

/** Write a task method atomically: the tensors its one filter selects. */
export function saveTaskMethod(m: TaskMethod, bb: Backbone<unknown>, path: string): void {
  writeMethodFile(m, path, taskMetadata(m, bb));
}

/** Read a task adapter file onto the backbone it was trained on (`force`: skip the weight-fingerprint check, never the shape checks). */
export function loadTaskMethod(path: string, bb: Backbone<unknown>, o: { force?: boolean } = {}): TaskMethod {
  return atFile(path, () => {
    const f = readSafetensors(path);
    const md = f.metadata;
    check(md.format === ADAPTER_FORMAT, `${path}: not a llama-adapter file (__metadata__.format is ${JSON.stringify(md.format ?? null)})`);
    check(
      md.method === TASK_METHOD,
      `${path}: not a task adapter (its method is ${JSON.stringify(md.method ?? 'llama-adapter v1')}); load it with generate / serve`,
    );
    check(md.version === ADAPTER_VERSION, `${path}: adapter file version ${md.version} is not supported (expected ${ADAPTER_VERSION})`);
    if (md.base_architecture !== bb.arch || md.base_shape !== baseShape(bb))
      throw new LlamaAdapterError(`${path}: trained for a base model "${md.base_shape ?? md.base_architecture}", this model is "${baseShape(bb)}"`);
    if (md.base_fingerprint !== bb.view.fingerprint && !o.force)
      throw new LlamaAdapterError(
        `${path}: trained on base weights with fingerprint ${md.base_fingerprint}, this model's is ${bb.view.fingerprint} (same architecture, different weights; pass --force to load anyway)`,
      );
    const task = md.task as TaskKind;
    check(TASK_KINDS.includes(task), `${path}: unknown task ${JSON.stringify(md.task)} (expected ${TASK_KINDS.join(', ')})`);
    const mode = md.prompt_mode;
    check(mode === 'none' || PROMPT_MODES.includes(mode as PromptMode), `${path}: unknown prompt_mode ${JSON.stringify(mode)}`);
    const head = md.head;
    check(head === 'linear' || head === 'roberta-classifier', `${path}: unknown head ${JSON.stringify(head)}`);
    let labels: unknown;
    try {
      labels = JSON.parse(md.labels ?? '[]');
    } catch (e) {
      throw new LlamaAdapterError(`${path}: __metadata__ "labels" is not valid JSON (${(e as Error).message})`, { cause: e });
    }
    check(Array.isArray(labels) && labels.every((l) => typeof l === 'string'), `${path}: __metadata__ "labels" must be a JSON array of strings`);
    const N = bb.view.attnShape.layers;
    const prompts =
      mode === 'none'
        ? null
        : {
            mode: mode as PromptMode,
            promptLength: metaInt(path, md, 'prompt_length', 1, 65536),
            adapterLayers: metaInt(path, md, 'adapter_layers', 1, N, "at most the model's layers"),
          };
    if (md.training_args !== undefined) metaJsonObject(path, md, 'training_args');
    const m = createTaskMethod(bb, { task, labels: labels as string[], prompts, head: head as HeadKind });
    const params = new Map([...m.tensors()].filter(([n]) => m.isParam(n)));
    for (const name of f.names()) check(params.has(name), `${path}: unexpected tensor "${name}" in a ${md.prompt_mode} task adapter`);
    for (const [name, p] of params) p.set(readParam(path, f, name, m.shapeOf(name)));
    for (const [k, v] of Object.entries(md)) m.meta[k] = v;
    m.invalidate();
    return m;
  });
}
