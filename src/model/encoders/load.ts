// Opening an encoder checkpoint: a Hugging Face directory whose config.json says model_type "vit"
// or "roberta" (ViT / RoBERTa and their task heads: vit.ts, roberta.ts).

import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Backend } from '../../backend/backend.js';
import { LlamaAdapterError } from '../../core/errors.js';
import { modelTypeOf } from './config.js';
import { loadRoberta, type RobertaModel } from './roberta.js';
import { loadVit, type VitModel } from './vit.js';

export type EncoderModel = VitModel | RobertaModel;

/** The encoder kind of an HF directory ('vit' / 'roberta'), or null when it is none of them. */
export function encoderKind(dir: string): 'vit' | 'roberta' | null {
  const cfg = path.join(dir, 'config.json');
  if (!fs.existsSync(cfg) || !fs.statSync(dir).isDirectory()) return null;
  try {
    const t = modelTypeOf(cfg);
    return t === 'vit' || t === 'roberta' ? t : null;
  } catch {
    return null;
  }
}

/** Load a ViT or RoBERTa directory. */
export function loadEncoder(dir: string, backend: Backend): EncoderModel {
  const kind = encoderKind(dir);
  if (kind === 'vit') return loadVit(dir, backend);
  if (kind === 'roberta') return loadRoberta(dir, backend);
  throw new LlamaAdapterError(`${dir}: not a ViT or RoBERTa directory (config.json with model_type "vit" or "roberta" and model.safetensors)`);
}
