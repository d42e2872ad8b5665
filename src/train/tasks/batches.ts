// Batches for the task loop, per backbone: images (preprocessed once, kept), RoBERTa token rows
// (`<s> text </s>`, padded to the batch's longest row with the pad id and an attention mask), LLaMA
// token rows (BOS + text, right-padded; features at each row's last real token, so padding is never
// read), and SQuAD features (squad.ts) with span targets. Texts longer than the model takes are
// cut at the end.

import type { ImageBatch, TokenBatch } from '../../methods/prompts/backbones.js';
import type { TaskTargets } from '../../methods/prompts/task.js';
import type { RobertaInput } from '../../model/encoders/roberta.js';
import type { Tokenizer } from '../../tokenizer/tokenizer.js';
import type { PreprocessConfig } from '../../vision/preprocess.js';
import { type Labelled, recordPixels } from './data.js';
import type { QaFeature, QaSpecial } from './squad.js';

/** Records the loop can batch: how many, and the model input and targets of any subset. */
export interface TaskDataset<In> {
  readonly size: number;
  batch(idx: readonly number[]): { x: In; targets: TaskTargets };
}

/** Image classification: pixels decoded and preprocessed on first use, then kept. */
export function imageDataset(records: readonly Labelled<string>[], labels: Int32Array, cfg: PreprocessConfig): TaskDataset<ImageBatch> {
  const cache = new Map<number, Float32Array>();
  const per = 3 * cfg.size * cfg.size;
  return {
    size: records.length,
    batch(idx) {
      const pixels = new Float32Array(idx.length * per);
      idx.forEach((i, b) => {
        let px = cache.get(i);
        if (!px) cache.set(i, (px = recordPixels(records[i], cfg)));
        pixels.set(px, b * per);
      });
      return { x: { pixels, B: idx.length }, targets: { labels: Int32Array.from(idx, (i) => labels[i]) } };
    },
  };
}

/** Rows of ids padded to one length: RoBERTa input (ids, mask) for `rows`. */
function padRows(rows: readonly number[][], pad: number): RobertaInput {
  const B = rows.length,
    T = Math.max(...rows.map((r) => r.length));
  const ids = new Int32Array(B * T).fill(pad),
    mask = new Int32Array(B * T);
  rows.forEach((r, b) => {
    ids.set(r, b * T);
    mask.fill(1, b * T, b * T + r.length);
  });
  return { ids, B, T, mask };
}

/** Text classification on RoBERTa: `<s> text </s>`, at most maxLength tokens. */
export function robertaTextDataset(
  records: readonly Labelled<string>[],
  labels: Int32Array,
  tok: Tokenizer,
  sp: QaSpecial,
  maxLength: number,
): TaskDataset<RobertaInput> {
  const rows = records.map((r) => [sp.bos, ...tok.encode(r.input).slice(0, maxLength - 2), sp.eos]);
  return {
    size: records.length,
    batch: (idx) => ({
      x: padRows(
        idx.map((i) => rows[i]),
        sp.pad,
      ),
      targets: { labels: Int32Array.from(idx, (i) => labels[i]) },
    }),
  };
}

/** Text classification on LLaMA: BOS + text, at most maxLength tokens, right-padded with `pad`. */
export function llamaTextDataset(
  records: readonly Labelled<string>[],
  labels: Int32Array,
  tok: Tokenizer,
  maxLength: number,
  pad = 0,
): TaskDataset<TokenBatch> {
  const rows = records.map((r) => tok.encode(r.input, { bos: true }).slice(0, maxLength));
  return {
    size: records.length,
    batch(idx) {
      const T = Math.max(...idx.map((i) => rows[i].length));
      const tokens = idx.map((i) => [...rows[i], ...new Array<number>(T - rows[i].length).fill(pad)]);
      return { x: { tokens, lengths: idx.map((i) => rows[i].length) }, targets: { labels: Int32Array.from(idx, (i) => labels[i]) } };
    },
  };
}

/** SQuAD features (one per context window) with their span targets. */
export function qaDataset(features: readonly QaFeature[], pad: number): TaskDataset<RobertaInput> {
  return {
    size: features.length,
    batch(idx) {
      const x = padRows(
        idx.map((i) => features[i].ids),
        pad,
      );
      return {
        x,
        targets: { starts: Int32Array.from(idx, (i) => features[i].start), ends: Int32Array.from(idx, (i) => features[i].end), B: x.B, T: x.T },
      };
    },
  };
}
