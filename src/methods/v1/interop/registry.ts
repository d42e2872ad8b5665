// Adapter files of every format behind one loadAdapter(pathOrDir, model, options): this library's
// .safetensors, a PEFT adaption_prompt directory, an official LLaMA-Adapter v1 .pth and a litgpt
// lit_model.pth.adapter, told apart by what the path holds (a directory with adapter_config.json;
// a torch zip whose state dict has adapter_query.weight or transformer.h.*.attn.adapter_wte; a
// safetensors file whose metadata says llama-adapter), never by its name alone. Also the writers:
// an adapter in any readable format can be written as this library's file, PEFT or official.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { atFile, check, LlamaAdapterError } from '../../../core/errors.js';
import { ByteSource, ioError } from '../../../core/fileio.js';
import { readTorchFile } from '../../../core/pth.js';
import { readSafetensors } from '../../../core/safetensors.js';
import type { MethodHost } from '../../../model/method.js';
import type { Adapter } from '../adapter.js';
import { ADAPTER_FORMAT, loadOwnAdapter, readOwnTensors, saveAdapter } from '../file.js';
import type { GateMode } from '../gate.js';
import type { PromptProjection } from '../prompt-projection.js';
import { isLitgpt, readLitgpt } from './litgpt.js';
import { isOfficial, readOfficial, writeOfficial } from './official.js';
import { PEFT_CONFIG, readPeft, writePeft } from './peft.js';
import { torchSource } from './source.js';
import { toAdapter, type AdapterFormat, type AdapterTensors } from './tensors.js';

export interface LoadAdapterOptions {
  /** This library's files: load onto a base whose weight fingerprint differs (never skips shape checks). */
  force?: boolean;
  /** Official files: the convention the gates were trained in (default: tanh-per-head for (1, H, 1, 1) gates, raw-per-layer for (1,)). */
  gate?: GateMode;
  /** Official files: prompt length K (the file does not store it; default 10, the official default). */
  promptLength?: number;
  /** litgpt files: 'litgpt-split' reproduces litgpt's prompt K/V mis-split (files trained by litgpt since Dec 2024). */
  promptProjection?: PromptProjection;
  /** Where warnings go (a third-party file's base cannot be verified, defaults taken); default process.emitWarning. */
  onWarning?: (message: string) => void;
}

const ZIP_MAGIC = 0x04034b50;

/** What format the adapter at `p` is in (without reading its tensors, except to tell torch files apart). */
export function detectAdapterFormat(p: string): AdapterFormat {
  return openAdapter(p, {}).format;
}

function peftDir(p: string, stat: fs.Stats): string | null {
  if (stat.isDirectory()) return fs.existsSync(path.join(p, PEFT_CONFIG)) ? p : null;
  const dir = path.dirname(p);
  const base = path.basename(p);
  return (base === PEFT_CONFIG || base.startsWith('adapter_model.')) && fs.existsSync(path.join(dir, PEFT_CONFIG)) ? dir : null;
}

/**
 * Whether `p` holds an adapter rather than a base model, from cheap signs only: a PEFT directory
 * or file, a PyTorch zip (no base-model format here is one), or a safetensors file whose metadata
 * says llama-adapter.
 */
export function looksLikeAdapter(p: string): boolean {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(p);
  } catch {
    return false;
  }
  if (peftDir(p, stat)) return true;
  if (!stat.isFile() || stat.size < 9) return false;
  const src = new ByteSource(p, { lazy: true });
  const head = src.bytes(0, 16);
  if (new DataView(head.buffer, head.byteOffset, 4).getUint32(0, true) === ZIP_MAGIC) return true;
  if (head[8] !== 0x7b) return false;
  try {
    return readSafetensors(p).metadata.format === ADAPTER_FORMAT;
  } catch {
    return false;
  }
}

/** Read the adapter at `p` into tensors (this library's format included), or say what it is instead. */
function openAdapter(p: string, o: LoadAdapterOptions): { format: AdapterFormat; read(): AdapterTensors } {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(p);
  } catch (e) {
    throw ioError(p, e);
  }
  const dir = peftDir(p, stat);
  if (dir) return { format: 'peft', read: () => readPeft(dir, o) };
  check(!stat.isDirectory(), `${p}: a directory without ${PEFT_CONFIG}: not a PEFT adapter (pass an adapter file or a PEFT adapter directory)`);
  const src = new ByteSource(p, { lazy: true });
  const head = src.bytes(0, Math.min(src.size, 16));
  const dv = new DataView(head.buffer, head.byteOffset, head.byteLength);
  if (head.length >= 4 && dv.getUint32(0, true) === ZIP_MAGIC) {
    const sd = torchSource(readTorchFile(p));
    if (isOfficial(sd)) return { format: 'official', read: () => readOfficial(sd, o) };
    if (isLitgpt(sd)) return { format: 'litgpt', read: () => readLitgpt(sd, o) };
    const names = sd.names();
    throw new LlamaAdapterError(
      `${p}: a PyTorch file, but not an adapter this library reads (${names.length} tensors: ${names.slice(0, 4).join(', ')}${names.length > 4 ? ', ...' : ''}); expected an official LLaMA-Adapter v1 or a litgpt adapter file`,
    );
  }
  if (head.length >= 9 && head[8] === 0x7b) return { format: 'llama-adapter', read: () => readOwnTensors(p) };
  throw new LlamaAdapterError(
    `${p}: not an adapter file (expected a llama-adapter .safetensors, a PEFT directory, an official .pth or a litgpt lit_model.pth.adapter)`,
  );
}

/** The tensors of the adapter at `p` in any readable format, without a base model (inspect, convert). */
export function readAdapterTensors(p: string, o: LoadAdapterOptions = {}): AdapterTensors {
  return atFile(p, () => openAdapter(p, o).read());
}

/**
 * Load the adapter at `pathOrDir` (any readable format, detected from what it holds) onto `host`.
 * This library's files are checked against the base's fingerprint; third-party files, which name
 * no base, against its shape (width, layers, heads), with a warning that its identity is unchecked.
 */
export function loadAdapter(pathOrDir: string, host: MethodHost, o: LoadAdapterOptions = {}): Adapter {
  return atFile(pathOrDir, () => {
    const opened = openAdapter(pathOrDir, o);
    if (opened.format === ADAPTER_FORMAT) {
      const a = loadOwnAdapter(pathOrDir, host, o);
      check(!o.gate || o.gate === a.config.gate, `${pathOrDir}: the file's gates are ${a.config.gate}; gate ${o.gate} cannot be chosen for it`);
      const pp = a.config.promptProjection ?? 'standard';
      check(
        !o.promptProjection || o.promptProjection === pp,
        `${pathOrDir}: the file's prompt projection is ${pp}; ${o.promptProjection} cannot be chosen for it`,
      );
      return a;
    }
    return toAdapter(opened.read(), host, o);
  });
}

/** Formats an adapter can be written in. */
export const WRITE_FORMATS = ['llama-adapter', 'peft', 'official'] as const;
export type WriteFormat = (typeof WRITE_FORMATS)[number];

/**
 * Write adapter tensors as `to` at `out` (PEFT: a directory). This library's format needs the base
 * (`host`) it is for; `t` is checked against it. Returns notes on what was converted and how to
 * read the result back. Conversions that would change what the adapter computes are refused.
 */
export function writeAdapterAs(t: AdapterTensors, to: WriteFormat, out: string, o: { host?: MethodHost; baseModel?: string | null } = {}): string[] {
  return atFile(out, () => {
    if (to === 'peft') return writePeft(t, out, { baseModel: o.baseModel });
    if (to === 'official') return writeOfficial(t, out);
    check(o.host, `${t.path}: writing a llama-adapter file needs the base model it is for (--model)`);
    const fp = t.metadata.base_fingerprint;
    check(
      fp === undefined || fp === o.host!.fingerprint,
      `${t.path}: adapter was trained on base weights with fingerprint ${fp}, this model's is ${o.host!.fingerprint}`,
    );
    const a = toAdapter(t, o.host!, { onWarning: () => {} });
    for (const [k, v] of Object.entries(t.metadata)) a.meta[k] ??= v;
    saveAdapter(a, out);
    return [];
  });
}
