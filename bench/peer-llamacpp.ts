// The node-llama-cpp peer (llama.cpp's prebuilt CPU build, the devDependency pinned in package.json):
// the same model as a GGUF file (our writer, in the bench's dtype, unless the config already is a
// GGUF path), the same threads; greedy decode tokens/s after BOS and prefill tokens/s of T tokens,
// each the median of `reps` runs, timed the way measure.ts times ours.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { LlamaConfig } from '../src/core/config.js';
import { isQuantDtype } from '../src/core/quant.js';
import type { ModelWeights } from '../src/core/weights.js';
import { type GgufWriteType, writeGgufModel } from '../src/formats/gguf.js';
import { SentencePieceBpe } from '../src/tokenizer/sentencepiece-bpe.js';

/** A SentencePiece vocabulary of `n` pieces (unk, bos, eos, 256 bytes, fillers) for synthetic models. */
function syntheticVocab(n: number): SentencePieceBpe {
  const pieces = Array.from({ length: n }, (_, i) =>
    i === 0 ? '<unk>' : i === 1 ? '<s>' : i === 2 ? '</s>' : i < 259 ? `<0x${(i - 3).toString(16).toUpperCase().padStart(2, '0')}>` : `\u2581t${i}`,
  );
  const types = Uint8Array.from(pieces, (_, i) => (i === 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1));
  return new SentencePieceBpe(
    { pieces, scores: new Float32Array(n), types },
    {
      kind: 'sentencepiece-model',
      path: 'synthetic',
      bosId: 1,
      eosId: 2,
      unkId: 0,
      addDummyPrefix: true,
      removeExtraWhitespaces: false,
      escapeWhitespaces: true,
      spaceSymbol: '\u2581',
      byteFallback: true,
    },
  );
}

const median = (a: number[]): number => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];

export interface LlamaCppResult {
  decode: number | null; // tokens/s
  prefill: number | null; // tokens/s
  file: string;
  version: string;
}

/**
 * Run the peer. `dtype` is the bench's: fp32 -> F32, bf16 -> BF16, f16 -> F16, a quantized type as it is
 * (matrices whose columns do not fit its blocks fall back as llama-quantize does).
 */
export async function runLlamaCppPeer(
  o: { dtype: string; threads: number; decodeTokens: number; prefillTokens: number; reps: number; ggufPath: string | null },
  c: LlamaConfig,
  w: ModelWeights,
  log: (m: string) => void,
): Promise<LlamaCppResult> {
  const { getLlama, LlamaLogLevel } = await import('node-llama-cpp');
  let file = o.ggufPath;
  let cleanup = (): void => {};
  if (!file) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-llamacpp-'));
    file = path.join(dir, 'model.gguf');
    cleanup = () => fs.rmSync(dir, { recursive: true, force: true });
    const type = (o.dtype === 'fp32' ? 'f32' : o.dtype) as GgufWriteType;
    log(`writing the model as GGUF ${type} for the node-llama-cpp peer (${file})`);
    writeGgufModel(file, c, w, syntheticVocab(c.vocabSize), isQuantDtype(type) || type === 'bf16' || type === 'f16' || type === 'f32' ? type : 'f32', 'bench');
  }
  try {
    const llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error });
    const model = await llama.loadModel({ modelPath: file });
    const ctx = await model.createContext({
      contextSize: Math.min(c.maxSeqLen, Math.max(o.prefillTokens, o.decodeTokens) + 8),
      threads: o.threads,
      batchSize: o.prefillTokens,
    });
    const ids = Array.from({ length: o.prefillTokens }, (_, i) => 3 + ((i * 7919) % (c.vocabSize - 3)));
    const dec: number[] = [];
    const pre: number[] = [];
    for (let r = 0; r < o.reps + 1; r++) {
      const seq = ctx.getSequence();
      let t0 = performance.now();
      let n = 0;
      for await (const _ of seq.evaluate([c.bosId as never], { temperature: 0 })) {
        if (n === 0) t0 = performance.now(); // from the first generated token, as ours
        if (++n > o.decodeTokens) break;
      }
      if (r > 0) dec.push(o.decodeTokens / ((performance.now() - t0) / 1000));
      seq.dispose();
      const s2 = ctx.getSequence();
      const p0 = performance.now();
      await s2.evaluateWithoutGeneratingNewTokens(ids as never[]);
      if (r > 0) pre.push(o.prefillTokens / ((performance.now() - p0) / 1000));
      s2.dispose();
    }
    await ctx.dispose();
    await model.dispose();
    const pkg = JSON.parse(fs.readFileSync(path.join(path.dirname(new URL(import.meta.resolve('node-llama-cpp')).pathname), '..', 'package.json'), 'utf8')) as {
      version: string;
    };
    return { decode: median(dec), prefill: median(pre), file: o.ggufPath ?? '(written by the bench)', version: pkg.version };
  } finally {
    cleanup();
  }
}
