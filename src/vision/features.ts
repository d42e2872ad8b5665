// Image features computed once: a memory cache (the same Float32Array for the same image bytes,
// so per-image prompt sources are cached too) over an optional on-disk cache keyed by the file's
// content hash and the encoder's identity (`DIR/<encoder key>/<sha256 of the bytes>.f32`, raw
// little-endian float32, written atomically). Images are decoded, preprocessed and encoded in
// batches. Errors name the image and, when given, the data record that refers to it.

import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LlamaAdapterError } from '../core/errors.js';
import { mkdirs, writeFileAtomic } from '../core/fs.js';
import type { ImageEncoder } from './image-encoder.js';
import { decodeImage } from './image.js';
import { preprocessImage } from './preprocess.js';

export class FeatureStore {
  private readonly mem = new Map<string, Float32Array>(); // content hash -> features (F)
  private readonly dir: string | null;
  /** Images encoded (not found in either cache) since creation. */
  encoded = 0;

  constructor(
    readonly encoder: ImageEncoder,
    cacheDir: string | null = null,
    private readonly batch = 16,
  ) {
    const key = createHash('sha256').update(JSON.stringify(encoder.identity)).digest('hex').slice(0, 16);
    this.dir = cacheDir ? path.join(cacheDir, key) : null;
  }

  /** Features of one image given as bytes (`name` in errors). */
  async ofBytes(bytes: Uint8Array, name: string): Promise<Float32Array> {
    return (await this.many([{ bytes, name }]))[0];
  }

  /** Features of image files; `where[i]` (e.g. "data.jsonl: line 3") is named in errors about file i. */
  async ofFiles(files: readonly string[], where: readonly string[] = []): Promise<Float32Array[]> {
    return this.many(
      files.map((f, i) => {
        try {
          return { bytes: fs.readFileSync(f), name: f };
        } catch (e) {
          const at = where[i] ? `${where[i]}: ` : '';
          throw new LlamaAdapterError(`${at}image ${f} cannot be read (${(e as NodeJS.ErrnoException).code ?? String(e)})`, { cause: e });
        }
      }),
      where,
    );
  }

  private async many(items: readonly { bytes: Uint8Array; name: string }[], where: readonly string[] = []): Promise<Float32Array[]> {
    const F = this.encoder.identity.featureDim;
    const out: Float32Array[] = new Array(items.length);
    const todo: { i: number; hash: string }[] = [];
    const pending = new Map<string, number[]>(); // hash -> indices waiting for it
    items.forEach((it, i) => {
      const hash = createHash('sha256').update(it.bytes).digest('hex');
      const hit = this.mem.get(hash) ?? this.fromDisk(hash, F);
      if (hit) {
        this.mem.set(hash, hit);
        out[i] = hit;
      } else if (pending.has(hash)) pending.get(hash)!.push(i);
      else {
        pending.set(hash, [i]);
        todo.push({ i, hash });
      }
    });
    const S = this.encoder.preprocess.size;
    for (let s = 0; s < todo.length; s += this.batch) {
      const part = todo.slice(s, s + this.batch);
      const px = new Float32Array(part.length * 3 * S * S);
      part.forEach(({ i }, j) => {
        try {
          px.set(preprocessImage(decodeImage(items[i].bytes, items[i].name), this.encoder.preprocess), j * 3 * S * S);
        } catch (e) {
          throw where[i] ? new LlamaAdapterError(`${where[i]}: ${(e as Error).message}`, { cause: e }) : e;
        }
      });
      const f = await this.encoder.features(px, part.length);
      part.forEach(({ hash }, j) => {
        const v = f.slice(j * F, (j + 1) * F);
        this.mem.set(hash, v);
        this.toDisk(hash, v);
        for (const k of pending.get(hash)!) out[k] = v;
      });
      this.encoded += part.length;
    }
    return out;
  }

  private fromDisk(hash: string, F: number): Float32Array | null {
    if (!this.dir) return null;
    try {
      const b = fs.readFileSync(path.join(this.dir, `${hash}.f32`));
      if (b.length !== F * 4) return null; // a foreign or cut file: recompute
      const v = new Float32Array(F);
      new Uint8Array(v.buffer).set(b);
      return v.every(Number.isFinite) ? v : null;
    } catch {
      return null;
    }
  }

  private toDisk(hash: string, v: Float32Array): void {
    if (!this.dir) return;
    mkdirs(this.dir);
    writeFileAtomic(path.join(this.dir, `${hash}.f32`), new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
  }
}
