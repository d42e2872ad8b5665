// Seeded random encoders in the Hugging Face layout (config.json + model.safetensors, F32), for
// benchmarks of real shapes without real weights (ViT-B/16, RoBERTa-base) and for tests: the same
// key names and scales as ../shared/reference/refencoders.py's random_vit / random_roberta
// (LayerNorm weights 1 + 0.1 N(0,1), biases 0.1 N(0,1), matrices N(0,1)/sqrt(fan_in)), not its values.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { Rng } from '../../core/rng.js';
import { type WritableTensor, writeSafetensors } from '../../core/safetensors.js';

export interface SyntheticEncoderShape {
  hidden: number; // C
  layers: number; // N
  heads: number; // H
  intermediate: number; // I
}

export const VIT_B16: SyntheticEncoderShape & { imageSize: number; patchSize: number } = {
  hidden: 768,
  layers: 12,
  heads: 12,
  intermediate: 3072,
  imageSize: 224,
  patchSize: 16,
};
export const ROBERTA_BASE: SyntheticEncoderShape & { vocabSize: number; maxPositions: number } = {
  hidden: 768,
  layers: 12,
  heads: 12,
  intermediate: 3072,
  vocabSize: 50265,
  maxPositions: 514,
};

function tensors(seed: number) {
  const rng = new Rng(seed);
  const out: WritableTensor[] = [];
  const add = (name: string, shape: number[], std: number, mean = 0): void => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = mean + std * rng.normal();
    out.push({ name, dtype: 'F32', shape, data });
  };
  const ln = (name: string, C: number): void => {
    add(`${name}.weight`, [C], 0.1, 1);
    add(`${name}.bias`, [C], 0.1);
  };
  const lin = (name: string, o: number, i: number): void => {
    add(`${name}.weight`, [o, i], i ** -0.5);
    add(`${name}.bias`, [o], 0.1);
  };
  return { out, add, ln, lin };
}

/** Write a ViTForImageClassification directory of this shape with seeded random weights. */
export function writeSyntheticVit(dir: string, s: SyntheticEncoderShape & { imageSize: number; patchSize: number }, seed = 0, numLabels = 10): void {
  const { out, add, ln, lin } = tensors(seed);
  const { hidden: C, intermediate: I, patchSize: p } = s;
  const n = (s.imageSize / p) ** 2 + 1;
  add('vit.embeddings.cls_token', [1, 1, C], 0.5);
  add('vit.embeddings.position_embeddings', [1, n, C], 0.2);
  add('vit.embeddings.patch_embeddings.projection.weight', [C, 3, p, p], (3 * p * p) ** -0.5);
  add('vit.embeddings.patch_embeddings.projection.bias', [C], 0.1);
  for (let i = 0; i < s.layers; i++) {
    const L = `vit.encoder.layer.${i}.`;
    ln(`${L}layernorm_before`, C);
    for (const t of ['query', 'key', 'value']) lin(`${L}attention.attention.${t}`, C, C);
    lin(`${L}attention.output.dense`, C, C);
    ln(`${L}layernorm_after`, C);
    lin(`${L}intermediate.dense`, I, C);
    lin(`${L}output.dense`, C, I);
  }
  ln('vit.layernorm', C);
  lin('classifier', numLabels, C);
  fs.mkdirSync(dir, { recursive: true });
  const config = {
    architectures: ['ViTForImageClassification'],
    model_type: 'vit',
    hidden_size: C,
    num_hidden_layers: s.layers,
    num_attention_heads: s.heads,
    intermediate_size: I,
    hidden_act: 'gelu',
    layer_norm_eps: 1e-12,
    image_size: s.imageSize,
    patch_size: p,
    num_channels: 3,
    qkv_bias: true,
    id2label: Object.fromEntries(Array.from({ length: numLabels }, (_, i) => [String(i), `LABEL_${i}`])),
  };
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config, null, 2));
  writeSafetensors(path.join(dir, 'model.safetensors'), out, { format: 'pt', seed: String(seed) });
}

/** Write a RobertaForQuestionAnswering directory of this shape with seeded random weights. */
export function writeSyntheticRoberta(dir: string, s: SyntheticEncoderShape & { vocabSize: number; maxPositions: number }, seed = 0): void {
  const { out, add, ln, lin } = tensors(seed);
  const { hidden: C, intermediate: I } = s;
  add('roberta.embeddings.word_embeddings.weight', [s.vocabSize, C], 1);
  add('roberta.embeddings.position_embeddings.weight', [s.maxPositions, C], 0.5);
  add('roberta.embeddings.token_type_embeddings.weight', [1, C], 0.2);
  ln('roberta.embeddings.LayerNorm', C);
  for (let i = 0; i < s.layers; i++) {
    const L = `roberta.encoder.layer.${i}.`;
    for (const t of ['query', 'key', 'value']) lin(`${L}attention.self.${t}`, C, C);
    lin(`${L}attention.output.dense`, C, C);
    ln(`${L}attention.output.LayerNorm`, C);
    lin(`${L}intermediate.dense`, I, C);
    lin(`${L}output.dense`, C, I);
    ln(`${L}output.LayerNorm`, C);
  }
  lin('qa_outputs', 2, C);
  fs.mkdirSync(dir, { recursive: true });
  const config = {
    architectures: ['RobertaForQuestionAnswering'],
    model_type: 'roberta',
    vocab_size: s.vocabSize,
    hidden_size: C,
    num_hidden_layers: s.layers,
    num_attention_heads: s.heads,
    intermediate_size: I,
    hidden_act: 'gelu',
    max_position_embeddings: s.maxPositions,
    type_vocab_size: 1,
    layer_norm_eps: 1e-5,
    pad_token_id: 1,
    bos_token_id: 0,
    eos_token_id: 2,
  };
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config, null, 2));
  writeSafetensors(path.join(dir, 'model.safetensors'), out, { format: 'pt', seed: String(seed) });
}
