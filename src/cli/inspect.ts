// `llama-adapter inspect PATH`: what a model or an adapter file holds.

import * as fs from 'node:fs';
import { Command } from 'commander';
import { readAdapterInfo, ADAPTER_FORMAT } from '../methods/v1/file.js';
import { GATE_RULES, isGateMode } from '../methods/v1/gate.js';
import { parameterCount } from '../core/config.js';
import { readModelFile } from '../formats/registry.js';
import { readSafetensors } from '../core/safetensors.js';
import { loadTokenizer } from '../tokenizer/load.js';

function isAdapterFile(p: string): boolean {
  if (!p.endsWith('.safetensors') || !fs.existsSync(p)) return false;
  return readSafetensors(p).metadata.format === ADAPTER_FORMAT;
}

export async function inspectReport(path: string, tokenizer?: string): Promise<Record<string, unknown>> {
  if (isAdapterFile(path)) {
    const { metadata: m, tensors } = readAdapterInfo(path);
    const n = tensors.reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1), 0);
    const { checkpoint, training_args, ...rest } = m;
    return {
      kind: checkpoint ? 'llama-adapter training checkpoint' : 'llama-adapter adapter',
      gate: m.gate,
      gate_meaning: isGateMode(m.gate ?? '') ? GATE_RULES[m.gate as keyof typeof GATE_RULES].describe : 'unknown',
      prompt_length: Number(m.prompt_length),
      adapter_layers: Number(m.adapter_layers),
      parameters: n,
      base: {
        dim: Number(m.base_dim),
        layers: Number(m.base_layers),
        heads: Number(m.base_heads),
        kv_heads: Number(m.base_kv_heads),
        vocab: Number(m.base_vocab),
        fingerprint: m.base_fingerprint,
      },
      training_args: training_args ? JSON.parse(training_args) : null,
      metadata: rest,
      tensors: tensors.filter((t) => !t.name.startsWith('optimizer.')).map((t) => `${t.name} [${t.shape.join(', ')}]`),
    };
  }
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
  return new Command('inspect')
    .description('show format, architecture, parameter count, dtypes and tokenizer of a model, or the config and base of an adapter')
    .argument('<path>', 'model directory / .bin, or adapter .safetensors')
    .option('--tokenizer <path>', 'tokenizer to report for a single-file model')
    .option('--json', 'print JSON')
    .action(async (p: string, f: { tokenizer?: string; json?: boolean }) => {
      const r = await inspectReport(p, f.tokenizer);
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
