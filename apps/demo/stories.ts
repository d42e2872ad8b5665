// Stories for the demo, written by the frozen base model itself: BOS alone as the prompt,
// sampled in batches with a fixed seed (row r of the whole run samples with seed + r), then cut
// to their first few whole sentences so training examples stay short ("a short story").

import { check } from '../../src/core/errors.js';
import type { LlamaModel } from '../../src/model/model.js';
import { generateBatch } from '../../src/generate/generate.js';

export interface SampleStoriesOptions {
  count: number; // stories to sample
  seed: number;
  batchSize?: number; // rows decoded together (default 32)
  maxTokens?: number; // new tokens per story (default 100)
  temperature?: number; // default 1.0
  topP?: number; // default 0.95
  onBatch?: (done: number, total: number) => void;
}

export interface SampledStory {
  text: string;
  finished: boolean; // the model ended the story itself (EOS) within maxTokens
}

/** Sample `count` stories from the base model (no adapter), BOS alone as the prompt. */
export async function sampleStories(model: LlamaModel, o: SampleStoriesOptions): Promise<SampledStory[]> {
  check(Number.isInteger(o.count) && o.count >= 1, `number of stories must be a positive integer (got ${o.count})`);
  const batch = o.batchSize ?? 32;
  const out: SampledStory[] = [];
  for (let start = 0; start < o.count; start += batch) {
    const n = Math.min(batch, o.count - start);
    const r = await generateBatch(model, new Array<string>(n).fill(''), {
      temperature: o.temperature ?? 1.0,
      topP: o.topP ?? 0.95,
      seed: o.seed + start,
      maxTokens: o.maxTokens ?? 100,
    });
    for (const g of r) out.push({ text: g.text, finished: g.finishReason === 'stop' });
    o.onBatch?.(out.length, o.count);
  }
  return out;
}

/**
 * Character offsets just after each sentence end: '.', '!' or '?' (optionally followed by a
 * closing quote) followed by the end of the text, a newline, or a space and then an upper-case
 * letter or an opening quote. A '.' inside dialogue followed by a lower-case word is not an end.
 */
export function sentenceEnds(text: string): number[] {
  const ends: number[] = [];
  for (let i = 0; i < text.length; i++) {
    if (!'.!?'.includes(text[i])) continue;
    let j = i + 1;
    while (j < text.length && '.!?'.includes(text[j])) j++;
    if (j < text.length && (text[j] === '"' || text[j] === '\u201d')) j++;
    if (j === text.length || text[j] === '\n' || (text[j] === ' ' && /^ +["\u201cA-Z]/.test(text.slice(j, j + 8)))) {
      ends.push(j);
      i = j - 1;
    }
  }
  return ends;
}

/**
 * The story's first whole sentences, at most maxChars long (the whole story when the model
 * finished it within maxChars), or null when fewer than minSentences fit.
 */
export function trimStory(s: SampledStory, maxChars: number, minSentences = 2): string | null {
  const text = s.text.replace(/\s+$/, '');
  if (s.finished && text.length <= maxChars && sentenceEnds(text).length >= minSentences) return text;
  const ends = sentenceEnds(text).filter((e) => e <= maxChars);
  if (ends.length < minSentences) return null;
  return text.slice(0, ends[ends.length - 1]);
}
