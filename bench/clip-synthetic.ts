// Synthetic CLIP vision towers for the encoder benchmark: seeded random weights written as an HF
// `CLIPVisionModelWithProjection` directory (config.json + F32 model.safetensors with HF key names),
// which both our loader and the PyTorch peer (refclip.load_clip_vision) read. Scales as refclip's
// random_clip_vision (matrices N(0,1)/sqrt(fan_in), LayerNorm weights 1 + 0.1 N, biases 0.1 N), so
// activations stay in range through every layer.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { Rng } from '../src/core/rng.js';
import { writeSafetensors, type WritableTensor } from '../src/core/safetensors.js';

/** HF CLIPVisionConfig fields of a tower shape. */
export interface ClipShape {
  hidden_size: number; // C
  intermediate_size: number; // MLP width
  num_hidden_layers: number; // N
  num_attention_heads: number;
  image_size: number; // S
  patch_size: number; // p
  projection_dim: number;
}

/** Named shapes: ViT-B/16 and ViT-L/14 as OpenAI CLIP (HF clip-vit-base-patch16 / clip-vit-large-patch14). */
export const CLIP_SHAPES: Record<string, ClipShape> = {
  'vit-b16': {
    hidden_size: 768,
    intermediate_size: 3072,
    num_hidden_layers: 12,
    num_attention_heads: 12,
    image_size: 224,
    patch_size: 16,
    projection_dim: 512,
  },
  'vit-l14': {
    hidden_size: 1024,
    intermediate_size: 4096,
    num_hidden_layers: 24,
    num_attention_heads: 16,
    image_size: 224,
    patch_size: 14,
    projection_dim: 768,
  },
};

/** Write the tower `shape` with weights from `seed` into `dir`; returns dir. */
export function writeSyntheticClip(dir: string, shape: ClipShape, seed = 0): string {
  const rng = new Rng(seed);
  const { hidden_size: C, intermediate_size: I, image_size: S, patch_size: p, projection_dim: P } = shape;
  const n = (S / p) ** 2 + 1;
  const ts: WritableTensor[] = [];
  const r = (name: string, dims: number[], std: number, mean = 0): void => {
    const data = new Float32Array(dims.reduce((a, b) => a * b, 1));
    for (let i = 0; i < data.length; i++) data[i] = mean + std * rng.normal();
    ts.push({ name, dtype: 'F32', shape: dims, data });
  };
  const vp = 'vision_model.';
  const ln = (name: string): void => {
    r(`${name}.weight`, [C], 0.1, 1);
    r(`${name}.bias`, [C], 0.1);
  };
  r(`${vp}embeddings.class_embedding`, [C], 0.5);
  r(`${vp}embeddings.patch_embedding.weight`, [C, 3, p, p], (3 * p * p) ** -0.5);
  r(`${vp}embeddings.position_embedding.weight`, [n, C], 0.2);
  ln(`${vp}pre_layrnorm`);
  for (let i = 0; i < shape.num_hidden_layers; i++) {
    const L = `${vp}encoder.layers.${i}.`;
    ln(`${L}layer_norm1`);
    ln(`${L}layer_norm2`);
    for (const m of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) {
      r(`${L}self_attn.${m}.weight`, [C, C], C ** -0.5);
      r(`${L}self_attn.${m}.bias`, [C], 0.1);
    }
    r(`${L}mlp.fc1.weight`, [I, C], C ** -0.5);
    r(`${L}mlp.fc1.bias`, [I], 0.1);
    r(`${L}mlp.fc2.weight`, [C, I], I ** -0.5);
    r(`${L}mlp.fc2.bias`, [C], 0.1);
  }
  ln(`${vp}post_layernorm`);
  r('visual_projection.weight', [P, C], C ** -0.5);
  fs.mkdirSync(dir, { recursive: true });
  const config = {
    architectures: ['CLIPVisionModelWithProjection'],
    model_type: 'clip_vision_model',
    ...shape,
    num_channels: 3,
    hidden_act: 'quick_gelu',
    layer_norm_eps: 1e-5,
    torch_dtype: 'float32',
  };
  fs.writeFileSync(path.join(dir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
  writeSafetensors(path.join(dir, 'model.safetensors'), ts, { format: 'pt', seed: String(seed) });
  return dir;
}
