// The demo's instruction-following score: for held-out instructions "Write a short story about
// NAME and a OBJECT.", the fraction of generations that mention the requested name and object
// (whole words; names case-sensitive, objects any case, plural allowed), plus name-only and
// object-only rates. Generation runs every variant (base model, adapters) over the same prompts
// with the same per-row seeds, so the variants are compared sample for sample.

import type { Adapter } from '../../src/methods/v1/adapter.js';
import type { GenerationResult } from '../../src/generate/generate.js';
import type { LlamaModel } from '../../src/model/model.js';
import { mentionsName, mentionsObject, type Combo } from './instructions.js';
import { generateBatch } from '../../src/generate/generate.js';

export interface Scores {
  n: number; // generations scored
  both: number; // fraction mentioning the name and the object (the score)
  bothCi95: number; // half-width of a 95% interval for `both` (normal approximation over the clusters)
  name: number; // fraction mentioning the name
  object: number; // fraction mentioning the object
  meanTokens: number; // mean generated tokens
  finished: number; // fraction that ended with EOS within the token limit
}

export interface ScoredGeneration {
  text: string;
  tokens: number;
  finished: boolean;
  name: boolean;
  object: boolean;
}

/** Score one generation against the combination it was asked for. */
export function scoreOne(g: Pick<GenerationResult, 'text' | 'ids' | 'finishReason'>, c: Combo): ScoredGeneration {
  return {
    text: g.text,
    tokens: g.ids.length,
    finished: g.finishReason === 'stop',
    name: mentionsName(g.text, c.name),
    object: mentionsObject(g.text, c.object),
  };
}

/**
 * Aggregate scored generations. `clusters` (one key per generation, e.g. the held-out
 * combination) makes the interval honest when several generations share an instruction: it is
 * computed from the per-cluster rates, not as if every generation were independent.
 */
export function aggregate(s: readonly ScoredGeneration[], clusters?: readonly string[]): Scores {
  const n = s.length;
  const frac = (f: (x: ScoredGeneration) => boolean): number => (n ? s.filter(f).length / n : 0);
  const ok = (x: ScoredGeneration): boolean => x.name && x.object;
  const groups = new Map<string, number[]>();
  s.forEach((x, i) => {
    const k = clusters ? clusters[i] : String(i);
    const g = groups.get(k) ?? [];
    g.push(ok(x) ? 1 : 0);
    groups.set(k, g);
  });
  const rates = [...groups.values()].map((g) => g.reduce((a, b) => a + b, 0) / g.length);
  const m = rates.length;
  const mean = m ? rates.reduce((a, b) => a + b, 0) / m : 0;
  const sd = m > 1 ? Math.sqrt(rates.reduce((a, r) => a + (r - mean) ** 2, 0) / (m - 1)) : 0;
  return {
    n,
    both: frac(ok),
    bothCi95: m > 1 ? (1.96 * sd) / Math.sqrt(m) : 0,
    name: frac((x) => x.name),
    object: frac((x) => x.object),
    meanTokens: n ? s.reduce((a, x) => a + x.tokens, 0) / n : 0,
    finished: frac((x) => x.finished),
  };
}

export interface EvalVariant {
  label: string;
  adapter: Adapter | null; // null = the base model
}

export interface EvalOptions {
  seed: number; // row i samples with seed + i in every variant
  temperature: number; // 0 = greedy
  topP: number;
  maxTokens: number;
  batchSize?: number; // rows decoded together (default 32)
  onBatch?: (variant: string, done: number, total: number) => void;
}

/**
 * Generate for every prompt with every variant. Rows are decoded in batches; row i always gets
 * seed + i, whichever variant and batch it is in.
 */
export async function generateVariants(
  model: LlamaModel,
  prompts: readonly string[],
  variants: readonly EvalVariant[],
  o: EvalOptions,
): Promise<GenerationResult[][]> {
  const batch = o.batchSize ?? 32;
  const out: GenerationResult[][] = [];
  for (const v of variants) {
    const rows: GenerationResult[] = [];
    for (let start = 0; start < prompts.length; start += batch) {
      const chunk = prompts.slice(start, start + batch);
      const r = await generateBatch(
        model,
        chunk,
        { temperature: o.temperature, topP: o.topP, maxTokens: o.maxTokens, seed: o.seed + start },
        new Array<Adapter | null>(chunk.length).fill(v.adapter),
      );
      rows.push(...r);
      o.onBatch?.(v.label, rows.length, prompts.length);
    }
    out.push(rows);
  }
  return out;
}
