// Checkpoint loading entry point: detects the format of a path and returns canonical weights.
// (Implementation of the format readers lives beside this file, one format per file.)
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { LlamaConfig } from '../core/config.js';
import { LlamaAdapterError } from '../core/errors.js';
import type { ModelWeights } from '../core/weights.js';
import { resolveDtype, type LoadedModel } from './build.js';
import { ioError } from '../core/fileio.js';
import { loadHfCheckpoint } from './hf.js';
import { LLAMA2C_MAGIC, loadLlama2c } from './llama2c.js';

export { fingerprint } from './fingerprint.js';

/** 'synthetic' = random weights made in memory by formats/synthetic.ts. */
export type CheckpointFormat = 'hf-safetensors' | 'llama2c-fp32' | 'llama2c-q80' | 'synthetic';

export interface Checkpoint {
  path: string; // what the user passed
  format: CheckpointFormat;
  config: LlamaConfig;
  weights: ModelWeights;
  sourceDtypes: string[]; // dtypes found in the file, e.g. ['F32'] or ['Q8_0', 'F32']
  /**
   * A tokenizer found beside the checkpoint: for a directory its tokenizer.json or
   * tokenizer.model; for a .bin file tokenizer.bin / tok{vocab}.bin / tokenizer.model /
   * tokenizer.json in the same folder (first found); null if none.
   */
  tokenizerPath: string | null;
  /** Hash of a sample of the weights as loaded in f32, before any bf16 rounding (fingerprint.ts). */
  fingerprint: string;
}

export interface LoadCheckpointOptions {
  dtype?: 'f32' | 'bf16'; // dtype of the big matrices; norms stay f32. Default 'f32'.
}

const GGUF_MAGIC = 0x46554747; // "GGUF"
const ZIP_MAGIC = 0x04034b50; // "PK\3\4": PyTorch .pt/.pth/.bin (zip pickle)

/** What format `p` holds (without loading it). Throws a LlamaAdapterError for unsupported inputs. */
export function detectFormat(p: string): CheckpointFormat {
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch (e) {
    throw ioError(p, e);
  }
  if (st.isDirectory()) return 'hf-safetensors';
  if (p.endsWith('.safetensors')) {
    throw new LlamaAdapterError(
      `${p}: a bare .safetensors file has no model configuration; pass the directory that holds it together with its config.json`,
    );
  }
  const head = readHead(p, 16);
  const dv = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const u32 = head.length >= 4 ? dv.getUint32(0, true) : -1;
  if (u32 === GGUF_MAGIC) throw new LlamaAdapterError(`${p}: GGUF checkpoints are not supported yet`);
  if (u32 === ZIP_MAGIC) {
    throw new LlamaAdapterError(
      `${p}: looks like a PyTorch pickle checkpoint (.pt/.pth/.bin), which is not supported; use a Hugging Face directory with safetensors weights or a llama2.c .bin`,
    );
  }
  if (u32 === LLAMA2C_MAGIC && head.length >= 8) return dv.getInt32(4, true) === 2 ? 'llama2c-q80' : 'llama2c-fp32';
  if (head.length >= 9 && head[8] === 0x7b /* '{' */ && dv.getUint32(4, true) === 0) {
    throw new LlamaAdapterError(
      `${p}: looks like a safetensors file, which has no model configuration; pass the directory that holds it together with its config.json`,
    );
  }
  return 'llama2c-fp32';
}

function readHead(p: string, n: number): Uint8Array {
  const buf = new Uint8Array(n);
  let fd: number;
  try {
    fd = fs.openSync(p, 'r');
  } catch (e) {
    throw ioError(p, e);
  }
  try {
    return buf.subarray(0, fs.readSync(fd, buf, 0, n, 0));
  } finally {
    fs.closeSync(fd);
  }
}

/** The tokenizer file beside a checkpoint, or null (see Checkpoint.tokenizerPath). */
export function findTokenizer(p: string, format: CheckpointFormat, vocabSize: number): string | null {
  const dir = format === 'hf-safetensors' ? p : path.dirname(p);
  const names =
    format === 'hf-safetensors'
      ? ['tokenizer.json', 'tokenizer.model']
      : ['tokenizer.bin', `tok${vocabSize}.bin`, 'tokenizer.model', 'tokenizer.json'];
  for (const n of names) {
    const f = path.join(dir, n);
    try {
      if (fs.statSync(f).isFile()) return f;
    } catch {
      // not there
    }
  }
  return null;
}

/**
 * Load a checkpoint: a Hugging Face Llama directory, a llama2.c legacy fp32 .bin, or a llama2.c
 * int8 (Q8_0) export. With `dtype: 'bf16'` the big matrices are bf16 (BF16 sources kept as-is).
 */
export function loadCheckpoint(p: string, options: LoadCheckpointOptions = {}): Checkpoint {
  const dtype = resolveDtype(options.dtype);
  const format = detectFormat(p);
  let m: LoadedModel;
  if (format === 'hf-safetensors') m = loadHfCheckpoint(p, { dtype });
  else m = loadLlama2c(p, { dtype });
  return {
    path: p,
    format,
    config: m.config,
    weights: m.weights,
    sourceDtypes: m.sourceDtypes,
    tokenizerPath: findTokenizer(p, format, m.config.vocabSize),
    fingerprint: m.fingerprint,
  };
}
