// The adapters a server holds, by name: loaded at start (--adapter NAME=FILE) or while serving
// from a file (or PEFT directory) under --adapter-dir (paths that resolve outside it are refused);
// any format loadAdapter reads. Unloading removes
// the name at once; requests already running keep their reference and finish.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { check, LlamaAdapterError } from '../core/errors.js';
import type { Adapter } from '../methods/v1/adapter.js';
import { metaJsonObject, trainingPromptStyle } from '../methods/v1/file.js';
import { effectiveGates } from '../methods/v1/gate.js';
import { loadAdapter, type LoadAdapterOptions } from '../methods/v1/interop/registry.js';
import type { LlamaModel } from '../model/model.js';
import type { MultimodalAdapter } from '../methods/v1/multimodal.js';
import { FeatureStore } from '../vision/features.js';
import { describeEncoder, type EncoderIdentity, type ImageEncoder } from '../vision/image-encoder.js';
import { ApiError, badParam } from './errors.js';

export interface ServedAdapter {
  name: string;
  adapter: Adapter; // the prompts and gates (a multimodal adapter's text part: rows without an image)
  /** A multimodal adapter: its projection and its encoder's feature cache (requests may carry one image). */
  multimodal?: { adapter: MultimodalAdapter; features: FeatureStore };
  file: string;
  promptStyle: string | undefined; // the training template (training_args.prompt_style), if the file says
  created: number; // unix seconds it was loaded
}

/** What the UI shows of a served adapter (GET /v1/adapters[/{name}]). */
export interface AdapterDescription {
  id: string;
  object: 'adapter';
  file: string;
  file_bytes: number | null; // null when the file is gone
  created: number;
  base_fingerprint: string;
  prompt_length: number; // K
  adapter_layers: number; // L
  first_layer: number;
  gate: string; // gate convention
  parameters: number; // all trainable parameters (a multimodal adapter's projection included)
  training_args: Record<string, unknown> | null;
  /** A multimodal adapter's frozen image encoder (as its file records it, and where it was loaded from) and trained projection. */
  multimodal?: {
    image_encoder: EncoderIdentity & { path: string; description: string };
    projection: { in_features: number; out_features: number; parameters: number };
    text_parameters: number; // prompts and gates
  };
  gates?: { layers: number[]; effective: number[][]; raw: number[][] }; // per adapted layer: (H) effective gates, the stored parameters
}

export class AdapterRegistry {
  private readonly byName = new Map<string, ServedAdapter>();

  constructor(
    private readonly model: LlamaModel,
    readonly dir: string | null, // --adapter-dir (realpath), or null: no loading while serving
    private readonly loadOptions: LoadAdapterOptions = {}, // how third-party files are read
  ) {}

  get(name: string): ServedAdapter | undefined {
    return this.byName.get(name);
  }

  list(): ServedAdapter[] {
    return [...this.byName.values()];
  }

  /** Load a file under a name (start-up: a bad file or a name in use is a LlamaAdapterError naming it). */
  add(name: string, file: string): ServedAdapter {
    check(!this.byName.has(name), `adapter name "${name}" is already loaded`);
    const adapter = loadAdapter(file, this.model, this.loadOptions);
    const s: ServedAdapter = { name, adapter, file, promptStyle: trainingPromptStyle(adapter), created: Math.floor(Date.now() / 1000) };
    this.byName.set(name, s);
    return s;
  }

  /** Serve a multimodal adapter (loaded with its encoder by the caller: loading an encoder is asynchronous). */
  addMultimodal(name: string, file: string, adapter: MultimodalAdapter, encoder: ImageEncoder): ServedAdapter {
    check(!this.byName.has(name), `adapter name "${name}" is already loaded`);
    const s: ServedAdapter = {
      name,
      adapter: adapter.text,
      multimodal: { adapter, features: new FeatureStore(encoder) },
      file,
      promptStyle: trainingPromptStyle(adapter.text),
      created: Math.floor(Date.now() / 1000),
    };
    this.byName.set(name, s);
    return s;
  }

  /** Load `rel` (relative to, or absolute inside, the adapter directory). */
  addFromDir(name: string, rel: string): ServedAdapter {
    if (!this.dir) throw new ApiError(400, 'loading adapters while serving needs --adapter-dir', 'invalid_request_error', 'path', 'no_adapter_dir');
    const p = path.resolve(this.dir, rel);
    let real: string;
    try {
      real = fs.realpathSync(p);
    } catch {
      throw new ApiError(404, `adapter file "${rel}" does not exist in the adapter directory`, 'not_found_error', 'path', 'adapter_file_not_found');
    }
    if (path.relative(this.dir, real).startsWith('..') || path.isAbsolute(path.relative(this.dir, real)))
      throw badParam('path', `path "${rel}" is outside the adapter directory`, 'path_outside_adapter_dir');
    const st = fs.statSync(real);
    if (!st.isFile() && !st.isDirectory()) throw badParam('path', `path "${rel}" is not a file or a PEFT adapter directory`);
    if (this.byName.has(name)) throw new ApiError(400, `adapter "${name}" is already loaded`, 'invalid_request_error', 'name', 'adapter_exists');
    try {
      return this.add(name, real);
    } catch (e) {
      if (e instanceof LlamaAdapterError) throw badParam('path', e.message, 'invalid_adapter');
      throw e;
    }
  }

  /** Metadata (and with `gates`, the effective gate per head per adapted layer) of a served adapter. */
  describe(s: ServedAdapter, gates = false): AdapterDescription {
    const a = s.adapter;
    let bytes: number | null = null;
    try {
      bytes = fs.statSync(s.file).size;
    } catch {
      // unlinked since it was loaded: the adapter is still in memory
    }
    const mm = s.multimodal;
    const projParams = mm ? mm.adapter.projW.length + mm.adapter.projB.length + mm.adapter.normW.length + mm.adapter.normB.length : 0; // (D, F) + 3 (D)
    const d: AdapterDescription = {
      id: s.name,
      object: 'adapter',
      file: this.dir && !path.relative(this.dir, s.file).startsWith('..') ? path.relative(this.dir, s.file) : s.file,
      file_bytes: bytes,
      created: s.created,
      base_fingerprint: a.meta.base_fingerprint ?? a.host.fingerprint,
      prompt_length: a.config.promptLength,
      adapter_layers: a.config.adapterLayers,
      first_layer: a.firstLayer,
      gate: a.config.gate,
      parameters: a.parameterCount + projParams,
      training_args: a.meta.training_args === undefined ? null : metaJsonObject(s.file, a.meta, 'training_args'),
    };
    if (mm) {
      const enc = mm.features.encoder;
      d.multimodal = {
        image_encoder: { ...enc.identity, path: enc.path, description: describeEncoder(enc.identity) },
        projection: { in_features: mm.adapter.featureDim, out_features: a.host.config.dim, parameters: projParams },
        text_parameters: a.parameterCount,
      };
    }
    if (gates) {
      const p = a.parameters();
      const layers = Array.from({ length: a.config.adapterLayers }, (_, i) => a.firstLayer + i);
      const eff = new Float32Array(a.host.config.nHeads);
      const raw = layers.map((l) => [...p.get(`layers.${l}.adaption_gate`)!]);
      d.gates = {
        layers,
        raw,
        effective: layers.map((l) => {
          effectiveGates(a.config.gate, p.get(`layers.${l}.adaption_gate`)!, eff);
          return [...eff];
        }),
      };
    }
    return d;
  }

  /** Adapter files in the adapter directory (relative paths; checkpoints left out), for loading. */
  available(): string[] {
    if (!this.dir) return [];
    return fs
      .readdirSync(this.dir, { withFileTypes: true })
      .filter((e) => e.isFile() && e.name.endsWith('.safetensors') && !e.name.endsWith('.ckpt.safetensors'))
      .map((e) => e.name)
      .sort();
  }

  remove(name: string): boolean {
    return this.byName.delete(name);
  }
}
