// Tokenizer tests: the Llama 2 fixture through tokenizer.model, llama2.c tokenizer.bin and a
// tokenizer.json converted from the .model; tinystories-656k tokenizer.json; stories260K tok512.bin;
// a small byte-level (GPT-2 / Llama 3 style) tokenizer.json; streaming decode; load errors.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { LlamaAdapterError } from '../src/core/errors.js';
import { byteLevelAlphabet } from '../src/tokenizer/byte-level.js';
import { loadTokenizer } from '../src/tokenizer/load.js';
import { PieceType, SentencePieceBpe } from '../src/tokenizer/sentencepiece-bpe.js';
import type { Tokenizer } from '../src/tokenizer/tokenizer.js';
import { assets, fixtures, tinystories656k, tok512 } from './helpers.js';

interface Case {
  text: string;
  ids: number[];
  pieces: string[];
}
const llamaDir = path.join(assets, 'tokenizers/llama2');
const fixture = JSON.parse(fs.readFileSync(path.join(fixtures, 'llama2-tokenizer.json'), 'utf8')) as { cases: Case[] };
const cases = fixture.cases;

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'llama-adapter-tok-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Push ids one at a time, concatenating outputs, then flush. */
function streamDecode(tok: Tokenizer, ids: readonly number[], atStart?: boolean): string {
  const d = tok.decoder(atStart === undefined ? undefined : { atStart });
  let s = '';
  for (const id of ids) s += d.push(id);
  return s + d.flush();
}

function checkFixture(tok: Tokenizer, only: (c: Case) => boolean = () => true): void {
  for (const c of cases.filter(only)) {
    const label = JSON.stringify(c.text);
    assert.deepEqual(tok.encode(c.text), c.ids, `encode ${label}`);
    assert.equal(tok.decode(c.ids), c.text, `decode ${label}`);
    assert.equal(streamDecode(tok, c.ids), c.text, `streaming decode ${label}`);
    assert.deepEqual(tok.encode(c.text, { bos: true, eos: true }), [tok.bosId, ...c.ids, tok.eosId], `bos/eos ${label}`);
  }
}

describe('Llama 2 fixture', () => {
  test('tokenizer.model (SentencePiece protobuf): every case encodes, decodes and streams exactly', async () => {
    const t0 = performance.now();
    const tok = await loadTokenizer(path.join(llamaDir, 'tokenizer.model'));
    const loadMs = performance.now() - t0;
    assert.ok(loadMs < 500, `loading the 32000-piece model took ${loadMs.toFixed(0)} ms`);
    assert.equal(tok.kind, 'sentencepiece-model');
    assert.equal(tok.vocabSize, 32000);
    assert.equal(tok.bosId, 1);
    assert.equal(tok.eosId, 2);
    checkFixture(tok);
    for (const c of cases)
      assert.deepEqual(
        c.ids.map((id) => tok.piece(id)),
        c.pieces,
      );
  });

  test('llama2.c tokenizer.bin (same vocabulary): every case encodes, decodes and streams exactly', async () => {
    const tok = await loadTokenizer(path.join(llamaDir, 'tokenizer.bin'));
    assert.equal(tok.kind, 'llama2c-bin');
    assert.equal(tok.vocabSize, 32000);
    assert.equal(tok.bosId, 1);
    assert.equal(tok.eosId, 2);
    checkFixture(tok);
    // llama2.c stores pieces with ' ' where SentencePiece has '▁'.
    for (const c of cases)
      assert.deepEqual(
        c.ids.map((id) => tok.piece(id)),
        c.pieces.map((p) => p.replaceAll('\u2581', ' ')),
      );
    // The vocabulary size may be given (llama2.c takes it from the model); fewer pieces are read.
    const small = await loadTokenizer(path.join(llamaDir, 'tokenizer.bin'), { vocabSize: 1000 });
    assert.equal(small.vocabSize, 1000);
  });

  test('encoding a few KB is fast', async () => {
    const tok = await loadTokenizer(path.join(llamaDir, 'tokenizer.model'));
    const text = cases
      .map((c) => c.text)
      .join(' ')
      .repeat(10); // ~4.6 KB, mixed scripts
    tok.encode(text); // warm up the JIT
    const t0 = performance.now();
    const ids = tok.encode(text);
    const ms = performance.now() - t0;
    assert.ok(ms < 50, `encoding ${text.length} chars took ${ms.toFixed(1)} ms`);
    assert.equal(tok.decode(ids), text);
  });
});

test('SentencePiece details: user-defined pieces, unused pieces, unk fusing, extra whitespace', () => {
  const { NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED } = PieceType;
  const table: [string, number, number][] = [
    ['<unk>', 0, UNKNOWN],
    ['<s>', 0, CONTROL],
    ['</s>', 0, CONTROL],
    ['\u2581', -10, NORMAL],
    ['a', -10, NORMAL],
    ['b', -10, NORMAL],
    ['c', -10, NORMAL],
    ['\u2581a', -1, NORMAL],
    ['ab', -2, NORMAL],
    ['bc', -3, NORMAL],
    ['abc', -4, UNUSED],
    ['<sep>', 0, USER_DEFINED],
  ];
  const sp = new SentencePieceBpe(
    { pieces: table.map((t) => t[0]), scores: Float32Array.from(table, (t) => t[1]), types: Uint8Array.from(table, (t) => t[2]) },
    {
      kind: 'sentencepiece-model',
      path: 'inline',
      bosId: 1,
      eosId: 2,
      unkId: 0,
      addDummyPrefix: true,
      removeExtraWhitespaces: true,
      escapeWhitespaces: true,
      spaceSymbol: '\u2581',
      byteFallback: false,
    },
  );
  const pieces = (text: string): string[] => sp.encode(text).map((id) => sp.piece(id));
  // 'abc' is UNUSED: the merge into it is undone (ab + c); unknown x becomes <unk>.
  assert.deepEqual(pieces('xabc'), ['\u2581', '<unk>', 'ab', 'c']);
  assert.deepEqual(pieces('xyz'), ['\u2581', '<unk>']); // consecutive unknowns fuse
  assert.deepEqual(pieces('a<sep>b'), ['\u2581a', '<sep>', 'b']); // user-defined stays whole
  assert.deepEqual(pieces('  a   b  '), ['\u2581a', '\u2581', 'b']); // remove_extra_whitespaces
  assert.deepEqual(pieces('   '), []);
  assert.equal(sp.decode(sp.encode('xabc a<sep>b')), 'abc a<sep>b'); // <unk> decodes to nothing
});

/**
 * A Hugging Face tokenizer.json for the Llama 2 vocabulary, converted from tokenizer.model as
 * transformers' LlamaConverter does: merges are every (left, right) split of a piece into two
 * pieces, ranked by the merged piece's score. 'legacy' = Prepend/Replace normalizer (the
 * Llama-2-7b-hf file); 'metaspace' = Metaspace pre-tokenizer with prepend_scheme 'first'.
 */
function llama2TokenizerJson(sp: SentencePieceBpe, style: 'legacy' | 'metaspace'): object {
  const { pieces, scores, types } = sp.vocab;
  const vocab: Record<string, number> = {};
  const mergeable = new Map<string, number>();
  pieces.forEach((p, id) => {
    vocab[p] = id;
    if (types[id] === PieceType.NORMAL || types[id] === PieceType.USER_DEFINED) mergeable.set(p, id);
  });
  const merges: { l: string; r: string; score: number; id: number; li: number; ri: number }[] = [];
  for (const [p, id] of mergeable) {
    const cps = Array.from(p);
    for (let k = 1; k < cps.length; k++) {
      const l = cps.slice(0, k).join('');
      const r = cps.slice(k).join('');
      const li = mergeable.get(l);
      const ri = mergeable.get(r);
      if (li !== undefined && ri !== undefined) merges.push({ l, r, score: scores[id], id, li, ri });
    }
  }
  merges.sort((a, b) => b.score - a.score || a.id - b.id || a.li - b.li || a.ri - b.ri);
  const meta = { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'first', split: false };
  return {
    version: '1.0',
    added_tokens: [0, 1, 2].map((id) => ({ id, content: pieces[id], single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer:
      style === 'legacy'
        ? {
            type: 'Sequence',
            normalizers: [
              { type: 'Prepend', prepend: '\u2581' },
              { type: 'Replace', pattern: { String: ' ' }, content: '\u2581' },
            ],
          }
        : null,
    pre_tokenizer: style === 'legacy' ? null : meta,
    post_processor: null,
    decoder:
      style === 'legacy'
        ? {
            type: 'Sequence',
            decoders: [
              { type: 'Replace', pattern: { String: '\u2581' }, content: ' ' },
              { type: 'ByteFallback' },
              { type: 'Fuse' },
              { type: 'Strip', content: ' ', start: 1, stop: 0 },
            ],
          }
        : { type: 'Sequence', decoders: [meta, { type: 'ByteFallback' }, { type: 'Fuse' }] },
    model: { type: 'BPE', dropout: null, unk_token: '<unk>', fuse_unk: true, byte_fallback: true, vocab, merges: merges.map((m) => `${m.l} ${m.r}`) },
  };
}

describe('tokenizer.json converted from the Llama 2 tokenizer.model', () => {
  let sp: SentencePieceBpe;
  before(async () => {
    sp = (await loadTokenizer(path.join(llamaDir, 'tokenizer.model'))) as SentencePieceBpe;
  });

  test('legacy Prepend/Replace normalizer: every fixture case matches', async () => {
    const dir = path.join(tmp, 'llama2-legacy');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(llama2TokenizerJson(sp, 'legacy')));
    fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ bos_token: '<s>', eos_token: { content: '</s>' } }));
    const tok = await loadTokenizer(dir);
    assert.equal(tok.kind, 'hf-tokenizer-json');
    assert.equal(tok.vocabSize, 32000);
    assert.equal(tok.bosId, 1);
    assert.equal(tok.eosId, 2);
    checkFixture(tok);
  });

  test('Metaspace prepend_scheme "first": matches, except it adds no prefix to text that starts with a space', async () => {
    const file = path.join(tmp, 'llama2-metaspace.json');
    fs.writeFileSync(file, JSON.stringify(llama2TokenizerJson(sp, 'metaspace')));
    const tok = await loadTokenizer(file);
    checkFixture(tok, (c) => !c.text.startsWith(' '));
    // HF's Metaspace only prepends '▁' when the text does not already start with one, so
    // " leading space" is segmented as SentencePiece segments "leading space".
    for (const c of cases.filter((x) => x.text.startsWith(' '))) {
      assert.deepEqual(tok.encode(c.text), sp.encode(c.text.slice(1)), JSON.stringify(c.text));
    }
  });
});

describe('tinystories-656k tokenizer.json', () => {
  let tok: Tokenizer;
  before(async () => {
    tok = await loadTokenizer(path.join(tinystories656k, 'tokenizer.json'));
  });

  test('loads with vocabulary 2048, BOS <|start_story|> = 1, EOS <|end_story|> = 2', () => {
    assert.equal(tok.kind, 'hf-tokenizer-json');
    assert.equal(tok.vocabSize, 2048);
    assert.equal(tok.bosId, 1);
    assert.equal(tok.piece(1), '<|start_story|>');
    assert.equal(tok.eosId, 2);
    assert.equal(tok.piece(2), '<|end_story|>');
  });

  test('encodes story sentences to the ids an independent implementation gives, and round-trips', () => {
    // Expected ids from @huggingface/tokenizers 0.2.0 (tokenizers.js) run offline on the same
    // tokenizer.json (its leading BOS removed); python `tokenizers` is not installed here.
    const expected: [string, number[]][] = [
      ['Once upon a time, there was a little girl named Lily.', [80, 147, 201, 282, 215, 286, 598, 629, 10]],
      ['She loved to play outside in the park. One day, she saw a big, red ball!', [80, 892, 887, 1584, 872, 615, 242, 1866, 1714, 4]],
      ['Tom and Sue went to the store.\nThey wanted to buy some "candy".', [80, 875, 566, 588, 2011, 920, 265, 366, 87, 526, 5, 687, 56, 77, 5, 10]],
      ['Ben said, "I can\'t find my toy!" Mom smiled.', [80, 540, 775, 1470, 467, 320, 408, 300, 927, 1069, 10]],
      [' two  spaces', [80, 80, 1209, 80, 415, 53, 1499]],
      ['The end.\n\n', [80, 247, 183, 122, 3]],
      ['', []],
    ];
    for (const [text, ids] of expected) {
      assert.deepEqual(tok.encode(text), ids, JSON.stringify(text));
      assert.equal(tok.decode(ids), text);
      assert.equal(streamDecode(tok, ids), text);
      assert.equal(tok.decode(tok.encode(text, { bos: true, eos: true })), text);
    }
  });

  test('common words are single tokens of the vocabulary', () => {
    for (const w of ['the', 'and', 'was', 'she', 'park', 'happy', 'ball', 'Lily', 'mom']) {
      const pieces = tok.encode(`x ${w} y`).map((id) => tok.piece(id));
      assert.ok(
        pieces.some((p) => p.replaceAll('\u2581', '') === w),
        `${w}: ${JSON.stringify(pieces)}`,
      );
    }
  });

  test('characters outside the vocabulary (which has no byte pieces) become <unk>, decoded as nothing', () => {
    const ids = tok.encode('café 🦙');
    assert.deepEqual(ids, [80, 295, 58, 0, 80, 0]);
    assert.equal(tok.decode(ids), 'caf ');
  });

  test('special tokens in plain text are ordinary text', () => {
    const ids = tok.encode('<|start_story|>hello');
    assert.ok(!ids.includes(1));
    assert.equal(tok.decode(ids), '<|start_story|>hello');
  });

  test('loading the model directory finds tokenizer.json', async () => {
    const t = await loadTokenizer(tinystories656k);
    assert.equal(t.kind, 'hf-tokenizer-json');
    assert.equal(t.path, path.join(tinystories656k, 'tokenizer.json'));
  });
});

describe('stories260K tok512.bin', () => {
  const story = 'Once upon a time, there was a little girl named Lily.';
  // Greedy decoding of stories260K.bin from BOS (assets MANIFEST).
  const greedy = [
    1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337, 410, 408, 419, 292, 411, 322, 265, 282, 295, 433,
    426, 385, 328, 432, 358, 394, 261, 370, 432, 352,
  ];
  const greedyText = 'Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, r';

  test('loads 512 pieces; a sentence round-trips and encodes as the model generated it', async () => {
    const tok = await loadTokenizer(tok512);
    assert.equal(tok.kind, 'llama2c-bin');
    assert.equal(tok.vocabSize, 512);
    const ids = tok.encode(story, { bos: true });
    assert.equal(tok.decode(ids), story);
    assert.deepEqual(ids, greedy.slice(0, ids.length));
  });

  test('the MANIFEST greedy ids decode to the published text (also streamed)', async () => {
    const tok = await loadTokenizer(tok512);
    assert.equal(tok.decode(greedy), greedyText);
    assert.equal(streamDecode(tok, greedy), greedyText);
  });
});

describe('streaming decoder', () => {
  test('holds back partial UTF-8 from byte pieces; atStart:false keeps the leading space', async () => {
    const tok = await loadTokenizer(path.join(llamaDir, 'tokenizer.model'));
    const ids = tok.encode('emoji 🦙!');
    const d = tok.decoder();
    const outs = ids.map((id) => d.push(id));
    assert.equal(outs.join('') + d.flush(), 'emoji 🦙!');
    // The four byte pieces of 🦙 give nothing until the last one completes the character.
    const llama = outs.indexOf('🦙');
    assert.deepEqual(outs.slice(llama - 3, llama), ['', '', '']);
    // Continuing after a prompt: the piece's space is real text.
    assert.equal(streamDecode(tok, tok.encode('hello world'), false), ' hello world');
    // An unfinished character is U+FFFD on flush.
    const cut = tok.decoder();
    assert.equal(cut.push(243) + cut.push(162) + cut.flush(), '\uFFFD'); // <0xF0> <0x9F>
  });
});

/** A small byte-level BPE tokenizer.json: GPT-2 style, or Llama 3 style (Split regex + ByteLevel). */
function byteLevelJson(style: 'gpt2' | 'llama3'): object {
  const { byteToChar } = byteLevelAlphabet();
  const vocab: Record<string, number> = {};
  byteToChar.forEach((c, b) => (vocab[c] = b));
  const merges: [string, string][] = [
    ['Ġ', 't'],
    ['h', 'e'],
    ['Ġt', 'he'],
    ['i', 'n'],
    ['Ġ', 'a'],
    ['in', 'g'],
    ["'", 's'],
    ['Ġ', 'Ġ'],
    ['Ċ', 'Ċ'],
    ['ð', 'Ł'],
    ["'", 'S'],
  ];
  let next = 256;
  for (const [a, b] of merges) if (!(a + b in vocab)) vocab[a + b] = next++;
  const added = [
    { id: next, content: '<|endoftext|>', special: true },
    { id: next + 1, content: '<|user|>', special: false },
  ];
  for (const a of added) vocab[a.content] = a.id;
  const llama3Pattern = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  return {
    version: '1.0',
    added_tokens: added.map((a) => ({ ...a, single_word: false, lstrip: false, rstrip: false, normalized: false })),
    normalizer: null,
    pre_tokenizer:
      style === 'gpt2'
        ? { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true }
        : {
            type: 'Sequence',
            pretokenizers: [
              { type: 'Split', pattern: { Regex: llama3Pattern }, behavior: 'Isolated', invert: false },
              { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
            ],
          },
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: style === 'llama3',
      vocab,
      // Both spellings of merges occur in the wild: "a b" strings and [a, b] pairs.
      merges: style === 'gpt2' ? merges.map((m) => m.join(' ')) : merges,
    },
  };
}

describe('byte-level BPE tokenizer.json', () => {
  // Expected ids cross-checked with @huggingface/tokenizers 0.2.0 on these same files.
  const expected: Record<'gpt2' | 'llama3', [string, number[]][]> = {
    gpt2: [
      ["the thing's in the ring", [116, 257, 256, 104, 261, 262, 32, 259, 258, 32, 114, 261]],
      ['Hello 🦙\n\nworld  ', [72, 101, 108, 108, 111, 32, 265, 166, 153, 10, 10, 119, 111, 114, 108, 100, 263]],
      ["IT'S 12345 ok", [73, 84, 39, 83, 32, 49, 50, 51, 52, 53, 32, 111, 107]],
      ['a<|user|>b', [97, 268, 98]],
      ['  the  ', [32, 258, 263]],
    ],
    llama3: [
      ["the thing's in the ring", [116, 257, 256, 104, 261, 262, 32, 259, 258, 32, 114, 261]],
      ['Hello 🦙\n\nworld  ', [72, 101, 108, 108, 111, 32, 265, 166, 153, 264, 119, 111, 114, 108, 100, 263]],
      ["IT'S 12345 ok", [73, 84, 266, 32, 49, 50, 51, 52, 53, 32, 111, 107]], // (?i:'s) keeps "'S" whole
      ['a<|user|>b', [97, 268, 98]],
      ['  the  ', [32, 258, 263]],
    ],
  };
  for (const style of ['gpt2', 'llama3'] as const) {
    test(`${style} style: encodes, decodes and streams`, async () => {
      const file = path.join(tmp, `${style}-tokenizer.json`);
      fs.writeFileSync(file, JSON.stringify(byteLevelJson(style)));
      const tok = await loadTokenizer(file);
      for (const [text, ids] of expected[style]) {
        assert.deepEqual(tok.encode(text), ids, JSON.stringify(text));
        assert.equal(tok.decode(ids), text);
        assert.equal(streamDecode(tok, ids), text);
      }
      // The special <|endoftext|> is never matched in text and decodes to nothing.
      const eot = 267;
      assert.equal(tok.piece(eot), '<|endoftext|>');
      assert.ok(!tok.encode('<|endoftext|>').includes(eot));
      assert.equal(tok.decode([eot, ...tok.encode('hi')]), 'hi');
    });
  }
});

describe('load errors name the file', () => {
  async function rejectsNaming(p: string, what: RegExp, options?: { vocabSize?: number }): Promise<void> {
    await assert.rejects(loadTokenizer(p, options), (e: unknown) => {
      assert.ok(e instanceof LlamaAdapterError, `expected LlamaAdapterError, got ${String(e)}`);
      assert.ok(e.message.includes(p), `message names the file: ${e.message}`);
      assert.match(e.message, what);
      assert.ok(!e.message.includes('\n'), 'one line');
      return true;
    });
  }

  test('missing file or directory without a tokenizer', async () => {
    await rejectsNaming(path.join(tmp, 'nope', 'tokenizer.model'), /not found/);
    const empty = path.join(tmp, 'empty-dir');
    fs.mkdirSync(empty);
    await rejectsNaming(empty, /no tokenizer\.json/);
  });

  test('truncated or implausible llama2.c tokenizer.bin', async () => {
    const bytes = fs.readFileSync(tok512);
    const cut = path.join(tmp, 'truncated.bin');
    fs.writeFileSync(cut, bytes.subarray(0, bytes.length - 3));
    await rejectsNaming(cut, /truncated/);
    const header = path.join(tmp, 'header-only.bin');
    fs.writeFileSync(header, bytes.subarray(0, 2));
    await rejectsNaming(header, /truncated/);
    // Asking for more pieces than the file holds.
    await rejectsNaming(tok512, /truncated/, { vocabSize: 600 });
    // A llama2.c model checkpoint is not a tokenizer.
    const notTok = path.join(tmp, 'model-not-tokenizer.bin');
    fs.writeFileSync(notTok, Buffer.from(new Int32Array([64, 172, 5, 8, 4, 512, 512, 0x3f800000]).buffer));
    await rejectsNaming(notTok, /llama2\.c tokenizer/);
  });

  test('garbage or truncated tokenizer.model', async () => {
    const garbage = path.join(tmp, 'garbage.model');
    fs.writeFileSync(garbage, 'this is not a protobuf, just some text\n'.repeat(20));
    await rejectsNaming(garbage, /SentencePiece/);
    const random = path.join(tmp, 'random.model');
    let x = 12345;
    const noise = Buffer.alloc(4096, 0).map(() => ((x = (x * 1103515245 + 12345) >>> 0) >>> 24) & 0xff);
    fs.writeFileSync(random, noise);
    await rejectsNaming(random, /SentencePiece/);
    const model = fs.readFileSync(path.join(llamaDir, 'tokenizer.model'));
    for (const n of [100_000, 100_003, model.length - 10]) {
      const cut = path.join(tmp, `cut-${n}.model`);
      fs.writeFileSync(cut, model.subarray(0, n));
      await rejectsNaming(cut, /corrupt or truncated/);
    }
  });

  test('tokenizer.json: unsupported model type, invalid JSON, not a tokenizer', async () => {
    const dir = path.join(tmp, 'unigram');
    fs.mkdirSync(dir);
    const uni = path.join(dir, 'tokenizer.json');
    fs.writeFileSync(uni, JSON.stringify({ version: '1.0', model: { type: 'Unigram', unk_id: 0, vocab: [['<unk>', 0]] } }));
    await rejectsNaming(uni, /unsupported tokenizer\.json model type 'Unigram'/);
    const bad = path.join(tmp, 'broken.json');
    fs.writeFileSync(bad, '{"model": {');
    await rejectsNaming(bad, /invalid JSON/);
    await rejectsNaming(path.join(tinystories656k, 'config.json'), /not a Hugging Face tokenizer\.json/);
  });
});
