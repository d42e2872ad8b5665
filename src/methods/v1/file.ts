// The adapter file on disk: saved atomically (temp file + rename), read and loaded by path. The
// format itself is methods/v1/adapter-format.ts.

import { readSafetensors } from '../../core/safetensors.js';
import { writeFileAtomic } from '../../core/fs.js';
import type { AdapterMethod, MethodHost } from '../../model/method.js';
import type { Adapter } from './adapter.js';
import {
  adapterFromFile,
  adapterInfo,
  adapterMetadata,
  methodFileParts,
  ownTensorsFrom,
  type AdapterFileInfo,
  type OwnAdapterOptions,
} from './adapter-format.js';
import type { AdapterTensors } from './interop/tensors.js';

export * from './adapter-format.js';

/** Write the adapter atomically (temp file + rename): the tensors its one filter selects (trainableTensors). */
export function saveAdapter(a: Adapter, path: string): void {
  writeMethodFile(a, path, adapterMetadata(a));
}

/** Write a method's trainable tensors (its one filter) as F32 with `metadata`, atomically. */
export function writeMethodFile(a: Pick<AdapterMethod<unknown>, 'tensors' | 'isParam' | 'shapeOf'>, path: string, metadata: Record<string, string>): void {
  writeFileAtomic(path, methodFileParts(a, path, metadata));
}

/** Header-level view of an adapter file (for `inspect`). */
export function readAdapterInfo(path: string): AdapterFileInfo {
  return adapterInfo(readSafetensors(path));
}

/**
 * Load an adapter file onto `host` (adapterFromFile: nothing in the file is trusted; errors name
 * the file).
 */
export function loadOwnAdapter(path: string, host: MethodHost, o: OwnAdapterOptions = {}): Adapter {
  return adapterFromFile(path, () => readSafetensors(path), host, o);
}

/**
 * An adapter file of this library read without a base model (for inspect and convert). A multimodal
 * file is refused unless `textPart` (inspect): see ownTensorsFrom.
 */
export function readOwnTensors(path: string, o: { textPart?: boolean } = {}): AdapterTensors {
  return ownTensorsFrom(path, () => readSafetensors(path), o);
}
