// `llama-adapter inspect PATH`: what a model or an adapter file holds.

import { Command } from 'commander';
import { atFile } from '../core/errors.js';
import { readAdapterInfo, readOwnTensors, TASK_METHOD } from '../methods/v1/file.js';
import { PROJ_NAMES } from '../methods/v1/adapter-format.js';
import { isMultimodalAdapterFile, recordedEncoder } from '../methods/v1/multimodal-file.js';
import { describeEncoder } from '../vision/image-encoder.js';
import { GATE_RULES } from '../methods/v1/gate.js';
import { looksLikeAdapter, readAdapterTensors } from '../methods/v1/interop/registry.js';
import { ADAPTER_FORMATS, parameterCountOf, type AdapterTensors } from '../methods/v1/interop/tensors.js';
import { PROMPT_PROJECTIONS } from '../methods/v1/prompt-projection.js';
import { parameterCount } from '../core/config.js';
import { ggmlTypeName, readGguf } from '../core/gguf.js';
import { readModelFile } from '../formats/registry.js';
import { loadTokenizer } from '../tokenizer/load.js';
import { adapterLoadOptions, adapterOptions, type AdapterFlags } from './common.js';

/** What an adapter of any format holds and which base it fits. */
function adapterReport(path: string, f: AdapterFlags): Record<string, unknown> {
  let info: ReturnType<typeof readAdapterInfo> | null = null;
  try {
    info = readAdapterInfo(path); // safetensors files only (a .pth or a PEFT directory: not a task adapter)
  } catch {
    info = null;
  }
  if (info?.metadata.method === TASK_METHOD) {
    // a task adapter (methods/prompts/file.ts): prompts and a head over a ViT / RoBERTa / LLaMA base
    const { training_args, ...metadata } = info.metadata;
    const parameters = info.tensors.reduce((a, x) => a + x.shape.reduce((p, d) => p * d, 1), 0);
    return {
      kind: 'task adapter',
      parameters,
      training_args: training_args ? JSON.parse(training_args) : null,
      metadata,
      tensors: info.tensors.map((x) => `${x.name} [${x.shape.join(', ')}]`),
    };
  }
  if (isMultimodalAdapterFile(path)) return multimodalReport(path);
  const t = readAdapterTensors(path, adapterLoadOptions(f));
  return textReport(t, path);
}

/** A multimodal adapter: its text part (as any adapter of this library), the image encoder it records and its projection. */
function multimodalReport(path: string): Record<string, unknown> {
  const info = readAdapterInfo(path);
  const rec = recordedEncoder(path, info.metadata)!;
  const text = textReport(
    atFile(path, () => readOwnTensors(path, { textPart: true })),
    path,
  );
  const proj = info.tensors.filter((x) => (PROJ_NAMES as readonly string[]).includes(x.name));
  const projParams = proj.reduce((s, x) => s + x.shape.reduce((a, b) => a * b, 1), 0);
  return {
    ...text,
    kind: text.kind === 'llama-adapter adapter' ? 'llama-adapter multimodal adapter' : `${text.kind} (multimodal)`,
    parameters: (text.parameters as number) + projParams,
    text_parameters: text.parameters,
    image_encoder: {
      ...rec.identity,
      path: rec.path ?? 'not recorded (pass --image-encoder PATH to use it)',
      description: describeEncoder(rec.identity),
    },
    projection: {
      meaning: 'I_p = LayerNorm(proj.weight x features + proj.bias) (proj_norm.weight, proj_norm.bias), added to every prompt row of every adapted layer',
      in_features: rec.identity.featureDim,
      out_features: text.base && (text.base as { dim: number }).dim,
      parameters: projParams,
      tensors: proj.map((x) => `${x.name} [${x.shape.join(', ')}]`),
    },
  };
}

function textReport(t: AdapterTensors, path: string): Record<string, unknown> {
  const ours = t.format === 'llama-adapter';
  const m = t.metadata;
  const { checkpoint, training_args, ...rest } = m;
  const top = t.layers.at(-1) as number;
  return {
    kind: ours ? (checkpoint ? 'llama-adapter training checkpoint' : 'llama-adapter adapter') : `${t.format} adapter`,
    format: t.format,
    format_meaning: ADAPTER_FORMATS[t.format],
    gate: t.gate,
    gate_meaning: GATE_RULES[t.gate].describe,
    gate_choice:
      t.gateChoice === 'file'
        ? `fixed by the ${t.format} format`
        : t.gateChoice === 'default'
          ? 'the documented default for this file (--adapter-gate chooses another)'
          : 'chosen with --adapter-gate',
    prompt_projection: t.promptProjection,
    prompt_projection_meaning: PROMPT_PROJECTIONS[t.promptProjection],
    prompt_length: t.promptLength,
    adapter_layers: t.layers.length,
    layers: `${t.layers[0]}..${top}`,
    dtype: t.dtype,
    parameters: parameterCountOf(t),
    base: {
      dim: t.dim,
      layers: t.baseLayers ?? top + 1,
      heads: t.heads ?? (ours ? null : 'not stored (PEFT and (1,)-gate official files do not say)'),
      kv_heads: t.kvHeads ?? (ours ? null : 'not stored'),
      vocab: ours ? Number(m.base_vocab) : 'not stored',
      fingerprint: ours
        ? m.base_fingerprint
        : `none: ${t.format === 'official' ? 'an' : 'a'} ${t.format} file does not name its base model, only its shape can be checked`,
    },
    notes: t.notes,
    ...(ours
      ? {
          training_args: training_args ? JSON.parse(training_args) : null,
          metadata: rest,
          tensors: readAdapterInfo(path)
            .tensors.filter((x) => !x.name.startsWith('optimizer.'))
            .map((x) => `${x.name} [${x.shape.join(', ')}]`),
        }
      : {}),
  };
}

/** A GGUF file's metadata (long arrays summarised) and its tensors with types and sizes. */
function ggufReport(path: string): Record<string, unknown> {
  const f = readGguf(path, { lazy: true });
  const metadata: Record<string, unknown> = {};
  for (const [k, v] of f.metadata) {
    const x = v.value;
    if (typeof x !== 'object') metadata[k] = typeof x === 'string' && x.length > 200 ? `${x.slice(0, 200)}... (${x.length} chars)` : x;
    else
      metadata[k] = `[${x.values.length} x ${x.type === 8 ? 'string' : 'number'}]${
        x.values.length
          ? `: ${Array.from(x.values as ArrayLike<unknown>)
              .slice(0, 4)
              .map((e) => JSON.stringify(e))
              .join(', ')}, ...`
          : ''
      }`;
  }
  const bytes: Record<string, number> = {};
  for (const t of f.tensors) bytes[ggmlTypeName(t.type)] = (bytes[ggmlTypeName(t.type)] ?? 0) + t.bytes;
  return {
    version: f.version,
    alignment: f.alignment,
    metadata,
    bytes_by_type: bytes,
    tensors: f.tensors.map((t) => `${t.name} ${ggmlTypeName(t.type)} [${t.dims.join(', ')}] ${t.bytes} B`),
  };
}

export async function inspectReport(path: string, tokenizer?: string, f: AdapterFlags = {}): Promise<Record<string, unknown>> {
  if (looksLikeAdapter(path)) return adapterReport(path, f);
  const mf = readModelFile(path);
  const c = mf.config;
  const tokPath = tokenizer ?? mf.tokenizerPath;
  let tok: Record<string, unknown> | null = null;
  if (tokPath) {
    const t = await loadTokenizer(tokPath);
    tok = { path: tokPath, kind: t.kind, vocab_size: t.vocabSize, bos_id: t.bosId, eos_id: t.eosId };
  }
  return {
    kind: 'model',
    format: mf.format,
    dtypes: mf.sourceDtypes,
    ...(mf.format === 'gguf' ? { gguf: ggufReport(path) } : {}),
    architecture: {
      dim: c.dim,
      layers: c.nLayers,
      heads: c.nHeads,
      kv_heads: c.nKvHeads,
      head_dim: c.headDim,
      hidden_dim: c.hiddenDim,
      vocab_size: c.vocabSize,
      max_seq_len: c.maxSeqLen,
      norm_eps: c.normEps,
      rope_theta: c.ropeTheta,
      rope_scaling: c.ropeScaling,
      tied_embeddings: c.tiedEmbeddings,
      bos_id: c.bosId,
      eos_id: c.eosId,
    },
    parameters: parameterCount(c),
    fingerprint: mf.fingerprint,
    tokenizer: tok,
  };
}

export function inspectCommand(): Command {
  return adapterOptions(
    new Command('inspect')
      .description('show format, architecture, parameter count, dtypes and tokenizer of a model, or the format, gate convention and base of an adapter')
      .argument('<path>', 'model directory / .bin, or adapter (.safetensors, PEFT directory, official .pth, litgpt lit_model.pth.adapter)')
      .option('--tokenizer <path>', 'tokenizer to report for a single-file model')
      .option('--json', 'print JSON'),
  ).action(async (p: string, f: AdapterFlags & { tokenizer?: string; json?: boolean }) => {
    const r = await inspectReport(p, f.tokenizer, f);
    if (f.json) process.stdout.write(`${JSON.stringify(r, null, 1)}\n`);
    else process.stdout.write(`${formatReport(r, '')}\n`);
  });
}

function formatReport(o: unknown, indent: string): string {
  if (o === null || typeof o !== 'object') return String(o);
  if (Array.isArray(o)) return o.map((v) => `\n${indent}  - ${typeof v === 'object' ? JSON.stringify(v) : String(v)}`).join('');
  return Object.entries(o as Record<string, unknown>)
    .map(([k, v]) => {
      const s = v !== null && typeof v === 'object' && !Array.isArray(v) ? `\n${formatReport(v, `${indent}  `)}` : ` ${formatReport(v, indent)}`;
      return `${indent}${k}:${s}`;
    })
    .join('\n');
}
