// Reading a base model from a path: an ordered registry of file formats. The first entry whose
// `detect` accepts the path (from its stat and first 16 bytes) either loads it or, for inputs we
// recognise but cannot use, refuses with a message that says what to pass instead. A new format
// is one more entry here.
import * as fs from 'node:fs';
import { atFile, LlamaAdapterError } from '../core/errors.js';
import { ByteSource, ioError } from '../core/fileio.js';
import { GGUF_MAGIC } from '../core/gguf.js';
import { readGgufModel } from './gguf.js';
import { readHfModel } from './hf.js';
import { LLAMA2C_MAGIC, readLlama2c } from './llama2c.js';
import { resolveDtype, type ModelFile, type ModelFormat, type ReadModelOptions } from './model-file.js';

/** Bytes of the file's start that `detect` sees (fewer for a shorter file; none for a directory). */
const HEAD_BYTES = 16;

interface Probe {
  path: string;
  stat: fs.Stats;
  head: Uint8Array;
  u32(offset: number): number; // little-endian uint32 of head at offset, -1 past its end
}

type Entry =
  | { name: ModelFormat; describe: string; detect(p: Probe): boolean; load(path: string, options: ReadModelOptions): ModelFile }
  | { name: null; describe: string; detect(p: Probe): boolean; refuse(path: string): string };

const ZIP_MAGIC = 0x04034b50; // "PK\3\4": PyTorch .pt/.pth/.bin (zip pickle)

const NO_CONFIG = 'has no model configuration; pass the directory that holds it together with its config.json';

/** Tried in order; the last entry accepts any file. */
const FORMATS: readonly Entry[] = [
  {
    name: 'hf-safetensors',
    describe: 'Hugging Face Llama directory (config.json + safetensors, sharded or not)',
    detect: (p) => p.stat.isDirectory(),
    load: readHfModel,
  },
  {
    name: null,
    describe: 'a bare .safetensors file',
    detect: (p) => p.path.endsWith('.safetensors'),
    refuse: (path) => `${path}: a bare .safetensors file ${NO_CONFIG}`,
  },
  {
    name: 'gguf',
    describe: 'GGUF (llama.cpp) Llama model, quantized or not',
    detect: (p) => p.u32(0) === GGUF_MAGIC,
    load: readGgufModel,
  },
  {
    name: null,
    describe: 'PyTorch pickle (zip)',
    detect: (p) => p.u32(0) === ZIP_MAGIC,
    refuse: (path) =>
      `${path}: looks like a PyTorch pickle checkpoint (.pt/.pth/.bin), which is not supported; use a Hugging Face directory with safetensors weights or a llama2.c .bin`,
  },
  {
    name: 'llama2c-q80',
    describe: 'llama2.c version-2 export (int8 Q8_0)',
    detect: (p) => p.u32(0) === LLAMA2C_MAGIC && p.u32(4) === 2,
    load: readLlama2c,
  },
  {
    name: null,
    describe: 'a safetensors file under another name',
    // an 8-byte header length below 2^32, then '{'
    detect: (p) => p.u32(0) !== LLAMA2C_MAGIC && p.head.length >= 9 && p.head[8] === 0x7b && p.u32(4) === 0,
    refuse: (path) => `${path}: looks like a safetensors file, which ${NO_CONFIG}`,
  },
  {
    name: 'llama2c-fp32',
    describe: 'llama2.c fp32 (legacy .bin or version-1 export)',
    detect: () => true,
    load: readLlama2c,
  },
];

function probe(path: string): Probe {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(path);
  } catch (e) {
    throw ioError(path, e);
  }
  let head: Uint8Array = new Uint8Array(0);
  if (!stat.isDirectory()) {
    const src = new ByteSource(path, { lazy: true }); // a non-file fails here, naming the path
    head = src.bytes(0, Math.min(src.size, HEAD_BYTES));
  }
  const dv = new DataView(head.buffer, head.byteOffset, head.byteLength);
  return { path, stat, head, u32: (o) => (o + 4 <= head.length ? dv.getUint32(o, true) : -1) };
}

function entryFor(path: string): Entry & { name: ModelFormat } {
  const p = probe(path);
  const e = FORMATS.find((f) => f.detect(p)) as Entry; // the last entry accepts anything
  if (e.name === null) throw new LlamaAdapterError(e.refuse(path));
  return e;
}

/** What format `path` holds (without loading it). Throws a LlamaAdapterError for unsupported inputs. */
export function detectFormat(path: string): ModelFormat {
  return entryFor(path).name;
}

/**
 * Read a base model: a Hugging Face Llama directory, a GGUF file, a llama2.c legacy fp32 .bin, or
 * a llama2.c int8 (Q8_0) export. With `dtype: 'bf16'` the big matrices are bf16 (BF16 sources
 * kept as-is); with a quantized dtype they are quantized; a GGUF's quantized tensors stay as stored.
 */
export function readModelFile(path: string, options: ReadModelOptions = {}): ModelFile {
  const dtype = resolveDtype(options.dtype);
  return atFile(path, () => entryFor(path).load(path, { ...options, dtype }));
}
