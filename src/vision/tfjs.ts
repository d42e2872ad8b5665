// A TF.js layers model as a frozen image encoder: the global-average-pooled activations of a few
// layers (the multi-scale set, the last one the model's pooled feature), concatenated. It runs on
// TF.js's WebAssembly backend (@tensorflow/tfjs-backend-wasm: XNNPACK kernels with SIMD, its .wasm
// files ship in the npm package) and falls back to TF.js's pure-JS CPU backend, with one line on
// stderr, where that cannot start; LLAMA_ADAPTER_TFJS_BACKEND=wasm|cpu forces one. This is the only
// module that imports TF.js (encoder.ts loads it lazily). `nsfwjs:mobilenet_v2` opens the MobileNetV2 that the
// nsfwjs package ships inside its tarball (ImageNet-initialised, fine-tuned by nsfwjs; its 5-way
// head is not used); any other path is a model.json with its weight shards beside it.

import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { check, LlamaAdapterError } from '../core/errors.js';
import type { EncoderIdentity, ImageEncoder } from './image-encoder.js';
import type { PreprocessConfig } from './preprocess.js';

/** Default multi-scale layers by model: MobileNetV2's 28x28, 14x14 and final 7x7 stages. */
const DEFAULT_LAYERS: Record<string, string[]> = {
  mobilenetv2: ['block_5_add', 'block_12_add', 'out_relu'],
};

interface Artifacts {
  topology: tf.io.ModelArtifacts['modelTopology'];
  specs: tf.io.WeightsManifestEntry[];
  weights: ArrayBuffer;
}

async function nsfwjsArtifacts(name: string): Promise<Artifacts> {
  check(name === 'mobilenet_v2', `nsfwjs:${name}: only nsfwjs:mobilenet_v2 is supported`);
  let mod: { MobileNetV2Model: { modelJson: () => Promise<{ default: unknown }>; weightBundles: (() => Promise<{ default: unknown }>)[] } };
  try {
    mod = (await import('nsfwjs/models/mobilenet_v2' as string)) as typeof mod;
  } catch (e) {
    throw new LlamaAdapterError(`nsfwjs:${name}: the nsfwjs package is not installed (npm install nsfwjs)`, { cause: e });
  }
  const json = (await mod.MobileNetV2Model.modelJson()).default as {
    modelTopology: Artifacts['topology'];
    weightsManifest: { weights: tf.io.WeightsManifestEntry[] }[];
  };
  const b64 = (await mod.MobileNetV2Model.weightBundles[0]()).default as string;
  const buf = Buffer.from(b64, 'base64');
  return {
    topology: json.modelTopology,
    specs: json.weightsManifest.flatMap((g) => g.weights),
    weights: buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length),
  };
}

function fileArtifacts(file: string): Artifacts {
  let json: { modelTopology?: Artifacts['topology']; weightsManifest?: { paths: string[]; weights: tf.io.WeightsManifestEntry[] }[] };
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8')) as typeof json;
  } catch (e) {
    throw new LlamaAdapterError(`${file}: cannot read the TF.js model (${e instanceof Error ? e.message : String(e)})`, { cause: e });
  }
  check(json.modelTopology && Array.isArray(json.weightsManifest), `${file}: not a TF.js layers model.json (no modelTopology / weightsManifest)`);
  const parts = json.weightsManifest!.flatMap((g) => g.paths).map((p) => fs.readFileSync(path.join(path.dirname(file), p)));
  const all = Buffer.concat(parts);
  return {
    topology: json.modelTopology,
    specs: json.weightsManifest!.flatMap((g) => g.weights),
    weights: all.buffer.slice(all.byteOffset, all.byteOffset + all.length),
  };
}

const TFJS_BACKENDS = ['wasm', 'cpu'] as const;
type TfjsBackend = (typeof TFJS_BACKENDS)[number];
let started: Promise<TfjsBackend> | null = null;

async function startWasm(): Promise<void> {
  await import('@tensorflow/tfjs-backend-wasm'); // registers the 'wasm' backend with the same @tensorflow/tfjs-core
  if (!(await tf.setBackend('wasm'))) throw new Error('the wasm backend did not initialise');
}

/** Select TF.js's backend once per process (see the header); returns the one in use. */
export function tfjsBackend(): Promise<TfjsBackend> {
  started ??= (async () => {
    tf.enableProdMode(); // no "install tfjs-node" banner, no debug checks
    const want = process.env.LLAMA_ADAPTER_TFJS_BACKEND;
    check(
      want === undefined || want === '' || (TFJS_BACKENDS as readonly string[]).includes(want),
      `LLAMA_ADAPTER_TFJS_BACKEND must be one of ${TFJS_BACKENDS.join(', ')} (got "${want}")`,
    );
    if (want !== 'cpu')
      try {
        await startWasm();
        return 'wasm';
      } catch (e) {
        const why = e instanceof Error ? e.message : String(e);
        if (want === 'wasm') throw new LlamaAdapterError(`LLAMA_ADAPTER_TFJS_BACKEND=wasm: ${why}`, { cause: e });
        process.stderr.write(`llama-adapter: TF.js wasm backend unavailable (${why}); using TF.js's CPU backend (about 20x slower)\n`);
      }
    await tf.setBackend('cpu');
    return 'cpu';
  })();
  return started;
}

class TfjsEncoder implements ImageEncoder {
  constructor(
    readonly identity: EncoderIdentity,
    readonly path: string,
    readonly preprocess: PreprocessConfig,
    private readonly multi: tf.LayersModel,
  ) {}

  async features(pixels: Float32Array, B: number): Promise<Float32Array> {
    const S = this.preprocess.size;
    check(pixels.length === B * S * S * 3, `${this.path}: ${pixels.length} pixel values for ${B} images of ${S}x${S}x3`);
    const out = tf.tidy(() => {
      const x = tf.tensor4d(pixels, [B, S, S, 3]);
      const ys = this.multi.predict(x) as tf.Tensor | tf.Tensor[];
      const list = Array.isArray(ys) ? ys : [ys];
      return tf.concat(
        list.map((y) => (y.rank === 4 ? tf.mean(y, [1, 2]) : y)),
        1,
      );
    });
    const data = (await out.data()) as Float32Array;
    out.dispose();
    return Float32Array.from(data);
  }
}

/** Load a TF.js layers model (see the header) as an encoder; `layers` are indices into model.layers. */
export async function loadTfjsEncoder(src: string, layers?: number[]): Promise<ImageEncoder> {
  await tfjsBackend();
  const art = src.startsWith('nsfwjs:') ? await nsfwjsArtifacts(src.slice('nsfwjs:'.length)) : fileArtifacts(src);
  let model: tf.LayersModel;
  try {
    model = await tf.loadLayersModel(tf.io.fromMemory({ modelTopology: art.topology, weightSpecs: art.specs, weightData: art.weights }));
  } catch (e) {
    throw new LlamaAdapterError(`${src}: cannot load the TF.js model (${e instanceof Error ? e.message : String(e)})`, { cause: e });
  }
  const inShape = model.inputs[0].shape;
  check(inShape.length === 4 && inShape[1] === inShape[2] && inShape[3] === 3, `${src}: expected an input of shape [batch, S, S, 3], got [${inShape}]`);
  const S = inShape[1] as number;
  const kind =
    model.name
      .toLowerCase()
      .replace(/[^a-z0-9]/g, '')
      .startsWith('mobilenetv2') || model.layers.some((l) => l.name === 'block_12_add')
      ? 'mobilenetv2'
      : '';
  const idx = layers ?? (DEFAULT_LAYERS[kind] ?? []).map((n) => model.layers.findIndex((l) => l.name === n));
  const chosen = idx.length ? idx : [model.layers.length - 1];
  check(
    chosen.every((i) => Number.isInteger(i) && i >= 0 && i < model.layers.length),
    `${src}: feature layers must be indices into the model's ${model.layers.length} layers (got ${chosen.join(',')})`,
  );
  const outs = chosen.map((i) => model.layers[i].output as tf.SymbolicTensor);
  const multi = tf.model({ inputs: model.inputs, outputs: outs });
  const featureDim = outs.reduce((s, o) => s + (o.shape.at(-1) as number), 0);
  const h = createHash('sha256');
  for (const w of model.getWeights()) {
    h.update(`${w.shape.join('x')}\n`);
    const d = w.dataSync() as Float32Array;
    h.update(new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
  }
  const identity: EncoderIdentity = {
    format: 'tfjs-layers',
    shape: `${model.name} input=${S} layers=${chosen.map((i) => model.layers[i].name).join('+')}`,
    fingerprint: h.digest('hex').slice(0, 16),
    layers: chosen,
    featureDim,
  };
  // nsfwjs scales pixels to [0, 1]; the resize + centre crop are CLIP's (nsfwjs stretches instead)
  const preprocess: PreprocessConfig = { size: S, mean: [0, 0, 0], std: [1, 1, 1], layout: 'hwc', crop: 'hf' };
  return new TfjsEncoder(identity, src, preprocess, multi);
}
