// The multimodal adapter file: this library's adapter file (file.ts: prompts, gates, the base's
// architecture and fingerprint) plus `proj.weight` (D, F), `proj.bias`, `proj_norm.weight`,
// `proj_norm.bias` (D), and in __metadata__ `method: "multimodal"`, `image_encoder` (JSON of the
// encoder's identity: format, shape, weight fingerprint, layers, feature width) and
// `image_encoder_path` (where it was loaded from when trained: a hint for the CLI, not trusted).
// Loading checks the encoder in use against the recorded one and refuses another; a text-only
// loader refuses this file by name (file.ts).

import { atFile, check, LlamaAdapterError } from '../../core/errors.js';
import { readSafetensors } from '../../core/safetensors.js';
import type { MethodHost } from '../../model/method.js';
import { loadImageEncoder } from '../../vision/encoder.js';
import { describeEncoder, type EncoderIdentity, type ImageEncoder } from '../../vision/image-encoder.js';
import { adapterFromMetadata, adapterMetadata, metaJsonObject, MULTIMODAL_METHOD, readParam, writeMethodFile, type OwnAdapterOptions } from './file.js';
import { MultimodalAdapter } from './multimodal.js';

/** The file's metadata: the text adapter's, the method and the encoder. */
export function multimodalMetadata(a: MultimodalAdapter, encoderPath?: string): Record<string, string> {
  const m = { ...adapterMetadata(a.text), method: MULTIMODAL_METHOD, image_encoder: JSON.stringify(a.encoder) };
  return encoderPath ? { ...m, image_encoder_path: encoderPath } : m;
}

/** Write a multimodal adapter atomically (the tensors its one filter selects). */
export function saveMultimodalAdapter(a: MultimodalAdapter, path: string, encoderPath?: string): void {
  writeMethodFile(a, path, multimodalMetadata(a, encoderPath ?? a.meta.image_encoder_path));
}

/** The encoder a multimodal adapter file (or checkpoint) records, and where it was loaded from; null for a text adapter. */
export function recordedEncoder(path: string, m: Record<string, string>): { identity: EncoderIdentity; path: string | null } | null {
  if (m.method !== MULTIMODAL_METHOD) return null;
  const j = metaJsonObject(path, m, 'image_encoder');
  const layers = j.layers;
  check(
    (j.format === 'hf-clip' || j.format === 'tfjs-layers') &&
      typeof j.shape === 'string' &&
      typeof j.fingerprint === 'string' &&
      Array.isArray(layers) &&
      layers.every((l) => Number.isInteger(l)) &&
      Number.isInteger(j.featureDim) &&
      (j.featureDim as number) >= 1 &&
      (j.featureDim as number) <= 1 << 20,
    `${path}: __metadata__ "image_encoder" is not an encoder description (format, shape, fingerprint, layers, featureDim)`,
  );
  return { identity: j as unknown as EncoderIdentity, path: m.image_encoder_path ?? null };
}

/** Read a multimodal adapter file onto `host`, for features of `encoder` (refused unless it is the recorded one). */
export function multimodalFromFile(path: string, host: MethodHost, encoder: EncoderIdentity, o: OwnAdapterOptions = {}): MultimodalAdapter {
  return atFile(path, () => {
    const f = readSafetensors(path);
    const rec = recordedEncoder(path, f.metadata);
    if (!rec) throw new LlamaAdapterError(`${path}: not a multimodal adapter (no "method": "multimodal" in its metadata); load it as a text adapter`);
    const text = adapterFromMetadata(path, f.metadata, host, { ...o, multimodal: true });
    const a = new MultimodalAdapter(text, rec.identity);
    a.checkEncoder(encoder, path);
    const params = a.parameters();
    for (const name of f.names()) check(params.has(name), `${path}: unexpected tensor "${name}" in a multimodal adapter file`);
    for (const [name, p] of params) p.set(readParam(path, f, name, a.shapeOf(name)));
    for (const [k, v] of Object.entries(f.metadata)) a.meta[k] = v;
    a.invalidate();
    return a;
  });
}

/** Whether the file at `path` is a multimodal adapter (a cheap header read; false for anything else). */
export function isMultimodalAdapterFile(path: string): boolean {
  try {
    return readSafetensors(path).metadata.method === MULTIMODAL_METHOD;
  } catch {
    return false;
  }
}

/**
 * Load a multimodal adapter with its image encoder: `encoderPath` when given, else the path the
 * file recorded at training time. Either way the encoder must be the one the file names.
 */
export async function loadMultimodalAdapter(
  path: string,
  host: MethodHost,
  o: OwnAdapterOptions & { encoderPath?: string; layers?: number[] } = {},
): Promise<{ adapter: MultimodalAdapter; encoder: ImageEncoder }> {
  const rec = atFile(path, () => recordedEncoder(path, readSafetensors(path).metadata));
  if (!rec) throw new LlamaAdapterError(`${path}: not a multimodal adapter (no "method": "multimodal" in its metadata)`);
  const where = o.encoderPath ?? rec.path;
  if (!where)
    throw new LlamaAdapterError(`${path}: a multimodal adapter needs its image encoder: pass --image-encoder PATH (${describeEncoder(rec.identity)})`);
  const encoder = await loadImageEncoder(where, { backend: host.backend, layers: o.layers ?? rec.identity.layers });
  return { adapter: multimodalFromFile(path, host, encoder.identity, o), encoder };
}
