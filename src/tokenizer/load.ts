// loadTokenizer(): opens a tokenizer by path, choosing the format from the file name (or content):
// a GGUF file (its tokenizer.ggml.* metadata), tokenizer.json (Hugging Face), *.model
// (SentencePiece), *.bin (llama2.c); a directory means its
// tokenizer.json, else tokenizer.model, else tokenizer.bin.
//
// Library evaluated: @huggingface/tokenizers 0.2.0 (tokenizers.js; Apache-2.0, no dependencies,
// installed in a scratch directory, not here). It builds from parsed tokenizer.json objects, so it
// works offline; on tinystories-656k it gave the same ids as this code for every sentence tried,
// and on a Llama 2 tokenizer.json (converted from tokenizer.model) it matched 14 of the 15
// fixture cases: it always matches special tokens in plain text ("<s> is not special here" -> id 1;
// its split_special_tokens config did not change that), while we never produce control tokens from
// text. It has no streaming decoder (decode() takes whole id arrays and throws on an empty one) and
// cannot read tokenizer.model or llama2.c tokenizer.bin. We hand-write all three formats: .model
// and .bin need the same SentencePiece-style BPE merge loop and streaming UTF-8 decoder anyway,
// the tokenizer.json part is a few hundred lines more, and the package gains no dependency.
import * as fs from 'node:fs/promises';
import * as nodePath from 'node:path';
import { atFile, LlamaAdapterError } from '../core/errors.js';
import { stripBom } from '../core/text.js';
import { GGUF_MAGIC, readGguf } from '../core/gguf.js';
import { ggufTokenizer } from './gguf.js';
import { addSpecialNames, parseHfTokenizerJson, type HfSpecialNames } from './hf-json.js';
import { parseLlama2cTokenizer } from './llama2c-bin.js';
import { parseSentencePieceModel } from './sp-model.js';
import type { Tokenizer } from './tokenizer.js';

export interface LoadTokenizerOptions {
  /** llama2.c tokenizer.bin only: how many pieces to read (default: to the end of the file). */
  vocabSize?: number;
}

const DIRECTORY_CANDIDATES = ['tokenizer.json', 'tokenizer.model', 'tokenizer.bin'];

async function exists(p: string): Promise<boolean> {
  try {
    return (await fs.stat(p)).isFile();
  } catch {
    return false;
  }
}

async function readFile(path: string): Promise<Buffer> {
  try {
    return await fs.readFile(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new LlamaAdapterError(`${path}: tokenizer file not found`, { cause: e });
    throw new LlamaAdapterError(`${path}: cannot read tokenizer file (${code ?? (e as Error).message})`, { cause: e });
  }
}

/** Whether the file starts with GGUF's magic (its tokenizer is in the metadata). */
async function isGguf(path: string): Promise<boolean> {
  let fh: fs.FileHandle | undefined;
  try {
    fh = await fs.open(path, 'r');
    const b = Buffer.alloc(4);
    const { bytesRead } = await fh.read(b, 0, 4, 0);
    return bytesRead === 4 && b.readUInt32LE(0) === GGUF_MAGIC;
  } catch {
    return false;
  } finally {
    await fh?.close();
  }
}

/** bos_token / eos_token of tokenizer_config.json or special_tokens_map.json beside `file`. */
async function specialNames(file: string): Promise<HfSpecialNames> {
  const names: HfSpecialNames = {};
  const dir = nodePath.dirname(file);
  for (const name of ['tokenizer_config.json', 'special_tokens_map.json']) {
    const p = nodePath.join(dir, name);
    if (!(await exists(p))) continue;
    let cfg: unknown;
    try {
      cfg = JSON.parse(stripBom(await fs.readFile(p, 'utf8')));
    } catch (e) {
      throw new LlamaAdapterError(`${p}: invalid JSON (${(e as Error).message})`, { cause: e });
    }
    addSpecialNames(names, cfg);
  }
  return names;
}

/** Loads a tokenizer.json, tokenizer.model or llama2.c tokenizer.bin (or a directory holding one). */
export async function loadTokenizer(path: string, options: LoadTokenizerOptions = {}): Promise<Tokenizer> {
  let stat: Awaited<ReturnType<typeof fs.stat>>;
  try {
    stat = await fs.stat(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new LlamaAdapterError(`${path}: tokenizer file not found`, { cause: e });
    throw new LlamaAdapterError(`${path}: cannot open tokenizer (${code ?? (e as Error).message})`, { cause: e });
  }
  if (stat.isDirectory()) {
    for (const name of DIRECTORY_CANDIDATES) {
      const p = nodePath.join(path, name);
      if (await exists(p)) return loadTokenizer(p, options);
    }
    throw new LlamaAdapterError(`${path}: directory has no tokenizer.json, tokenizer.model or tokenizer.bin`);
  }

  if (await isGguf(path)) return atFile(path, () => ggufTokenizer(readGguf(path, { lazy: true })));
  const buf = await readFile(path);
  const bytes = new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  const lower = path.toLowerCase();
  let format: 'json' | 'model' | 'bin';
  if (lower.endsWith('.json')) format = 'json';
  else if (lower.endsWith('.model')) format = 'model';
  else if (lower.endsWith('.bin')) format = 'bin';
  else {
    // No telling name: sniff. JSON starts with '{'; a ModelProto with field 1 (pieces) with 0x0A.
    const firstText = buf.subarray(0, 64).toString('latin1').trimStart();
    if (firstText.startsWith('{')) format = 'json';
    else if (bytes[0] === 0x0a) format = 'model';
    else format = 'bin';
  }
  // the format boundary: whatever a corrupt file trips becomes an error naming it
  if (format === 'json') {
    const names = await specialNames(path);
    return atFile(path, () => parseHfTokenizerJson(stripBom(buf.toString('utf8')), path, names));
  }
  if (format === 'model') return atFile(path, () => parseSentencePieceModel(bytes, path));
  return atFile(path, () => parseLlama2cTokenizer(bytes, path, { vocabSize: options.vocabSize }));
}
