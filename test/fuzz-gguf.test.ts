// 100,000 mutated GGUF files through the whole GGUF path (container reader, Llama config and
// tensors, the quantized blocks' NaN/Inf check, the tokenizer from the metadata): 0 crashes (every
// failure a LlamaAdapterError naming the file), 0 hangs (the slowest mutant is reported and must
// stay under a second), bounded memory (the heap may not grow by more than 64 MB over the run:
// every count is checked against the file size before anything is allocated for it). The seed: a
// tiny Q8_0 model our writer made (one or two blocks per row, a SentencePiece vocabulary with byte pieces).
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, it } from 'node:test';
import { LlamaAdapterError } from '../src/core/errors.js';
import { readGguf } from '../src/core/gguf.js';
import { readGgufModel, writeGgufModel } from '../src/formats/gguf.js';
import { syntheticModelFile } from '../src/formats/synthetic.js';
import { ggufTokenizer } from '../src/tokenizer/gguf.js';
import { SentencePieceBpe } from '../src/tokenizer/sentencepiece-bpe.js';
import { mutate } from './fuzz.js';

const TOTAL = Number(process.env.FUZZ_GGUF_TOTAL ?? 100_000);
// in memory where there is a tmpfs: opening a disk file 300,000 times was three quarters of the run
const tmp = fs.mkdtempSync(path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'llama-adapter-fuzz-gguf-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

function seedFile(): Uint8Array {
  const pieces = [
    '<unk>',
    '<s>',
    '</s>',
    ...Array.from({ length: 256 }, (_, b) => `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`),
    '\u2581',
    'a',
    'b',
    '\u2581a',
  ];
  const types = Uint8Array.from(pieces, (_, i) => (i === 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1));
  const tok = new SentencePieceBpe(
    { pieces, scores: Float32Array.from(pieces, (_, i) => -i), types },
    {
      kind: 'sentencepiece-model',
      path: 'seed',
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
  const mf = syntheticModelFile({ dim: 32, hiddenDim: 64, nLayers: 1, nHeads: 2, nKvHeads: 1, vocabSize: pieces.length, maxSeqLen: 64 }, 3);
  const file = path.join(tmp, 'seed.gguf');
  writeGgufModel(file, mf.config, mf.weights, tok, 'q8_0');
  return new Uint8Array(fs.readFileSync(file));
}

it(`${TOTAL} mutated GGUF files: 0 crashes, 0 hangs, bounded memory, every failure a clear error`, { timeout: 600_000 }, (t) => {
  const seeds = [seedFile()];
  const name = path.join(tmp, 'mutant.gguf');
  const counts = { loaded: 0, refused: 0 };
  const crashes: string[] = [];
  const unnamed: string[] = [];
  let slowest = 0;
  const heap0 = process.memoryUsage().heapUsed;
  let heapMax = heap0;
  for (let i = 0; i < TOTAL; i++) {
    const bytes = mutate({ original: seeds[i % seeds.length], json: null }, 21, i);
    fs.writeFileSync(name, bytes);
    const t0 = performance.now();
    try {
      readGgufModel(name, { checkTensors: true });
      ggufTokenizer(readGguf(name)).encode('a ab b\u00e9');
      counts.loaded++;
    } catch (e) {
      if (!(e instanceof LlamaAdapterError)) crashes.push(`mutant ${i}: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
      else if (!e.message.includes(name)) unnamed.push(`mutant ${i}: ${e.message}`);
      else counts.refused++;
    }
    slowest = Math.max(slowest, performance.now() - t0);
    if (i % 5000 === 0) heapMax = Math.max(heapMax, process.memoryUsage().heapUsed);
  }
  t.diagnostic(
    `gguf fuzz: ${TOTAL} mutants, ${counts.refused} refused, ${counts.loaded} loaded, ${crashes.length} crashes, slowest ${slowest.toFixed(1)} ms, heap +${((heapMax - heap0) / 2 ** 20).toFixed(1)} MB`,
  );
  assert.equal(crashes.length, 0, crashes.slice(0, 5).join('\n'));
  assert.equal(unnamed.length, 0, unnamed.slice(0, 5).join('\n'));
  assert.ok(slowest < 1000, `a mutant took ${slowest} ms`);
  assert.ok(heapMax - heap0 < 64 * 2 ** 20, `heap grew by ${heapMax - heap0} bytes`);
  assert.ok(counts.refused > TOTAL / 10, `only ${counts.refused} refused`);
});
