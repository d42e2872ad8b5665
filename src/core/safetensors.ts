// safetensors files on disk: read (small files at once, files >= 2 GB lazily, tensor by tensor:
// core/fileio.ts) and written atomically. The format itself is core/safetensors-bytes.ts.
import { ByteSource, type ByteSourceOptions } from './fileio.js';
import { writeFileAtomic } from './fs.js';
import { parseSafetensors, safetensorsParts, type SafetensorsFile, type WritableTensor } from './safetensors-bytes.js';

export type { SafetensorsFile, WritableTensor } from './safetensors-bytes.js';

/** Open and validate a safetensors file. Arrays it returns may alias its in-memory copy. */
export function readSafetensors(path: string, options: ByteSourceOptions = {}): SafetensorsFile {
  return parseSafetensors(new ByteSource(path, options));
}

/** Write a safetensors file atomically (writeFileAtomic); the layout is safetensorsParts'. */
export function writeSafetensors(path: string, tensors: readonly WritableTensor[], metadata: Record<string, string> = {}): void {
  writeFileAtomic(path, safetensorsParts(path, tensors, metadata));
}
