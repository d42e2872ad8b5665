// Configs of the Hugging Face encoders, read from config.json with HF's own defaults for missing
// fields (ViTConfig, RobertaConfig): ViT (`ViTModel`, `ViTForImageClassification`) and RoBERTa
// (`RobertaModel`, `RobertaForQuestionAnswering`, `RobertaForSequenceClassification`). Every number
// is range-checked; anything unsupported (relative position embeddings, an activation we have no
// kernel for, a non-square image) is refused naming the file and the field.

import * as fs from 'node:fs';
import { GELU, type GeluKind } from '../../backend/backend.js';
import { CONFIG_LIMITS } from '../../core/config.js';
import { check, LlamaAdapterError } from '../../core/errors.js';

/** HF hidden_act names -> our GELU kernels. */
const ACTS: Record<string, GeluKind> = { gelu: GELU.erf, gelu_new: GELU.tanh, gelu_pytorch_tanh: GELU.tanh, gelu_fast: GELU.tanh, quick_gelu: GELU.quick };

interface EncoderConfigBase {
  hidden: number; // C, the model width
  layers: number; // N encoder layers
  heads: number; // H attention heads (head size C / H)
  intermediate: number; // I, the MLP's hidden width
  act: GeluKind; // the MLP activation (hidden_act)
  eps: number; // layer_norm_eps
  labels: string[]; // id2label in id order ([] when the config names none)
}

export interface VitConfig extends EncoderConfigBase {
  arch: 'vit';
  imageSize: number; // S, square input side
  patchSize: number; // p (S / p patches per side; tokens = (S/p)^2 + 1 with CLS)
  channels: number; // input channels (3)
  qkvBias: boolean; // query/key/value projections have biases
}

export interface RobertaConfig extends EncoderConfigBase {
  arch: 'roberta';
  vocabSize: number; // V, word embedding rows
  maxPositions: number; // position embedding rows (512 + pad + 1 = 514 for roberta-base)
  typeVocab: number; // token type embedding rows
  padId: number; // pad token id (position ids count the non-pad tokens from padId + 1)
  bosId: number; // <s>
  eosId: number; // </s> (also the separator between question and context)
}

function readJson(file: string): Record<string, unknown> {
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new LlamaAdapterError(`${file}: cannot read the model config (${e instanceof Error ? e.message : String(e)})`, { cause: e });
  }
  check(raw !== null && typeof raw === 'object' && !Array.isArray(raw), `${file}: expected a JSON object`);
  return raw as Record<string, unknown>;
}

/** The model_type a config.json names ('' when none). */
export function modelTypeOf(file: string): string {
  const t = readJson(file).model_type;
  return typeof t === 'string' ? t : '';
}

/** A reader of one config's fields: integers within limits, positive numbers, strings; HF defaults for missing fields. */
function fields(file: string, c: Record<string, unknown>) {
  const int = (key: string, def: number, min: number, max: number): number => {
    const v = c[key] ?? def;
    check(
      typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max,
      `${file}: "${key}" must be an integer from ${min} to ${max} (got ${JSON.stringify(v)})`,
    );
    return v as number;
  };
  const pos = (key: string, def: number): number => {
    const v = c[key] ?? def;
    check(typeof v === 'number' && Number.isFinite(v) && v > 0, `${file}: "${key}" must be a positive number (got ${JSON.stringify(v)})`);
    return v as number;
  };
  const act = (): GeluKind => {
    const a = c.hidden_act ?? 'gelu';
    check(
      typeof a === 'string' && Object.hasOwn(ACTS, a),
      `${file}: hidden_act ${JSON.stringify(a)} is not supported (expected ${Object.keys(ACTS).join(', ')})`,
    );
    return ACTS[a as string];
  };
  const labels = (): string[] => {
    const m = c.id2label;
    if (m === undefined || m === null) return [];
    check(typeof m === 'object' && !Array.isArray(m), `${file}: "id2label" must be an object of id -> label`);
    const e = Object.entries(m as Record<string, unknown>);
    const out = new Array<string>(e.length);
    for (const [k, v] of e) {
      const i = /^\d+$/.test(k) ? Number(k) : -1;
      check(i >= 0 && i < e.length && out[i] === undefined, `${file}: "id2label" ids must be 0..${e.length - 1} (got "${k}")`);
      check(typeof v === 'string', `${file}: "id2label" label ${k} must be a string`);
      out[i] = v as string;
    }
    return out;
  };
  return { int, pos, act, labels };
}

function base(file: string, c: Record<string, unknown>): EncoderConfigBase {
  const f = fields(file, c);
  const b: EncoderConfigBase = {
    hidden: f.int('hidden_size', 768, 1, CONFIG_LIMITS.dim),
    layers: f.int('num_hidden_layers', 12, 1, CONFIG_LIMITS.nLayers),
    heads: f.int('num_attention_heads', 12, 1, CONFIG_LIMITS.nHeads),
    intermediate: f.int('intermediate_size', 3072, 1, CONFIG_LIMITS.hiddenDim),
    act: f.act(),
    eps: f.pos('layer_norm_eps', 1e-12), // ViTConfig's and RobertaConfig's default; real RoBERTa files say 1e-5
    labels: f.labels(),
  };
  check(b.hidden % b.heads === 0, `${file}: hidden_size ${b.hidden} is not a multiple of num_attention_heads ${b.heads}`);
  return b;
}

/** A ViTConfig (defaults: ViT-B/16 at 224, as HF). */
export function readVitConfig(file: string): VitConfig {
  const c = readJson(file);
  const f = fields(file, c);
  const cfg: VitConfig = {
    arch: 'vit',
    ...base(file, c),
    imageSize: f.int('image_size', 224, 1, 1 << 14),
    patchSize: f.int('patch_size', 16, 1, 1 << 14),
    channels: f.int('num_channels', 3, 1, 16),
    qkvBias: c.qkv_bias === undefined ? true : c.qkv_bias === true,
  };
  check(cfg.imageSize % cfg.patchSize === 0, `${file}: image_size ${cfg.imageSize} is not a multiple of patch_size ${cfg.patchSize}`);
  return cfg;
}

/** A RobertaConfig (defaults: roberta-base's shape with HF's class defaults). */
export function readRobertaConfig(file: string): RobertaConfig {
  const c = readJson(file);
  const f = fields(file, c);
  const pet = c.position_embedding_type ?? 'absolute';
  check(pet === 'absolute', `${file}: position_embedding_type ${JSON.stringify(pet)} is not supported (only "absolute")`);
  const cfg: RobertaConfig = {
    arch: 'roberta',
    ...base(file, c),
    vocabSize: f.int('vocab_size', 50265, 1, CONFIG_LIMITS.vocabSize),
    maxPositions: f.int('max_position_embeddings', 512, 2, CONFIG_LIMITS.maxSeqLen),
    typeVocab: f.int('type_vocab_size', 2, 1, 1 << 16),
    padId: f.int('pad_token_id', 1, 0, CONFIG_LIMITS.vocabSize),
    bosId: f.int('bos_token_id', 0, 0, CONFIG_LIMITS.vocabSize),
    eosId: f.int('eos_token_id', 2, 0, CONFIG_LIMITS.vocabSize),
  };
  for (const [k, v] of [
    ['pad_token_id', cfg.padId],
    ['bos_token_id', cfg.bosId],
    ['eos_token_id', cfg.eosId],
  ] as const)
    check(v < cfg.vocabSize, `${file}: ${k} ${v} is outside the vocabulary of ${cfg.vocabSize}`);
  check(cfg.maxPositions > cfg.padId + 1, `${file}: max_position_embeddings ${cfg.maxPositions} leaves no position after pad_token_id ${cfg.padId}`);
  return cfg;
}

/** Longest sequence a RoBERTa model takes: positions run from pad + 1 (514 rows -> 512 tokens). */
export function robertaMaxTokens(c: RobertaConfig): number {
  return c.maxPositions - c.padId - 1;
}

/** Tokens per image of a ViT: patches + CLS. */
export function vitTokens(c: VitConfig): number {
  return (c.imageSize / c.patchSize) ** 2 + 1;
}
