// Log-likelihood of continuations: for each (prompt, continuation) pair, the sum over the
// continuation's tokens of log p(token | everything before it), under the row's prompt source.
// Used to rank the options of a multiple-choice question by what the model finds most likely
// (eval scienceqa's extra column). One forward over prompt + continuation per pair; rows of a
// batch are padded at the end, which causal attention keeps from changing earlier positions.

import { check } from '../core/errors.js';
import type { PromptSource } from '../model/method.js';
import type { LlamaModel } from '../model/model.js';

export interface ScoredContinuation {
  prompt: readonly number[]; // ids, BOS included
  continuation: readonly number[]; // ids scored after the prompt (at least one)
  source: PromptSource | null; // adapter (or any prompt source); null = the base model
}

/** log p(continuation | prompt) of each row (natural log), `batch` rows per forward. */
export function continuationLogProbs(model: LlamaModel, rows: readonly ScoredContinuation[], batch = 8): number[] {
  const V = model.config.vocabSize;
  const out: number[] = [];
  for (let s = 0; s < rows.length; s += batch) {
    const part = rows.slice(s, s + batch);
    const seqs = part.map((r, i) => {
      check(r.prompt.length > 0 && r.continuation.length > 0, `continuationLogProbs: row ${s + i} has an empty prompt or continuation`);
      return [...r.prompt, ...r.continuation];
    });
    const T = Math.max(...seqs.map((q) => q.length));
    check(T <= model.config.maxSeqLen, `continuationLogProbs: ${T} tokens exceed the model's context of ${model.config.maxSeqLen}`);
    const tokens = seqs.map((q) => [...q, ...new Array<number>(T - q.length).fill(model.tokenizer.eosId)]);
    const logits = model.forward(tokens, { adapter: part.map((r) => r.source) }); // (B, T, V)
    part.forEach((r, b) => {
      let lp = 0;
      for (let j = 0; j < r.continuation.length; j++) {
        const t = r.prompt.length + j - 1; // the position whose logits predict continuation[j]
        const row = logits.subarray((b * T + t) * V, (b * T + t + 1) * V);
        let max = -Infinity;
        for (let v = 0; v < V; v++) if (row[v] > max) max = row[v];
        let sum = 0;
        for (let v = 0; v < V; v++) sum += Math.exp(row[v] - max);
        lp += row[r.continuation[j]] - max - Math.log(sum);
      }
      out.push(lp);
    });
  }
  return out;
}
