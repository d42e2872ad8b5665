// Hugging Face Llama directories on disk: reading (formats/hf-read.ts over the folder's files)
// and writing such directories (for tests and for exporting).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { check } from '../core/errors.js';
import type { LlamaConfig } from '../core/config.js';
import type { ModelWeights } from '../core/weights.js';
import type { ModelFile, ReadModelOptions } from './model-file.js';
import { ioError } from '../core/fileio.js';
import { readSafetensors, writeSafetensors, type WritableTensor } from '../core/safetensors.js';
import { mkdirs, writeFileAtomic } from '../core/fs.js';
import { HF_CONFIG, HF_INDEX, HF_SINGLE, hfConfigJson, hfTensors, readHfDir, type HfSaveDtype, type ModelDir } from './hf-read.js';

export { hfConfigJson, hfTensors, permuteToHfRows, unpermuteHfRows } from './hf-read.js';

/** A folder on disk as a ModelDir. */
function nodeDir(dir: string): ModelDir {
  return {
    path: dir,
    file: (name) => path.join(dir, name),
    has: (name) => fs.existsSync(path.join(dir, name)),
    list: () => {
      try {
        return fs.readdirSync(dir);
      } catch {
        return [];
      }
    },
    text: (name) => {
      try {
        return fs.readFileSync(path.join(dir, name), 'utf8');
      } catch (e) {
        throw ioError(path.join(dir, name), e);
      }
    },
    safetensors: (name, o) => readSafetensors(path.join(dir, name), { lazy: o?.lazy }),
  };
}

/** Read an HF Llama directory into canonical weights. */
export function readHfModel(dir: string, options: ReadModelOptions = {}): ModelFile {
  return readHfDir(nodeDir(dir), options);
}

/**
 * Write canonical weights as an HF Llama directory: config.json plus model.safetensors, or
 * `shards` files model-0000i-of-0000n.safetensors with model.safetensors.index.json.
 */
export function writeHfModel(dir: string, config: LlamaConfig, weights: ModelWeights, options: { dtype?: HfSaveDtype; shards?: number } = {}): void {
  const shards = options.shards ?? 1;
  check(Number.isInteger(shards) && shards >= 1, `shards must be a positive integer, got ${shards}`);
  try {
    mkdirs(dir);
  } catch (e) {
    throw ioError(dir, e);
  }
  const tensors = hfTensors(config, weights, options.dtype ?? 'F32');
  const meta = { format: 'pt' };
  if (shards === 1) {
    writeSafetensors(path.join(dir, HF_SINGLE), tensors, meta);
  } else {
    check(tensors.length >= shards, `cannot split ${tensors.length} tensors into ${shards} shards`);
    const total = tensors.reduce((a, t) => a + t.data.byteLength, 0);
    const groups: WritableTensor[][] = Array.from({ length: shards }, () => []);
    // contiguous groups of about equal bytes, none empty
    let acc = 0;
    let gi = 0;
    tensors.forEach((t, i) => {
      const remaining = tensors.length - i; // including t
      const groupsAfter = shards - 1 - gi;
      if (gi < shards - 1 && groups[gi].length > 0 && (acc >= ((gi + 1) * total) / shards || remaining <= groupsAfter)) gi++;
      groups[gi].push(t);
      acc += t.data.byteLength;
    });
    const weightMap: Record<string, string> = {};
    groups.forEach((g, i) => {
      const name = `model-${String(i + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`;
      writeSafetensors(path.join(dir, name), g, meta);
      for (const t of g) weightMap[t.name] = name;
    });
    writeJson(path.join(dir, HF_INDEX), { metadata: { total_size: total }, weight_map: weightMap });
  }
  writeJson(path.join(dir, HF_CONFIG), hfConfigJson(config));
}

function writeJson(file: string, value: unknown): void {
  writeFileAtomic(file, `${JSON.stringify(value, null, 2)}\n`);
}
