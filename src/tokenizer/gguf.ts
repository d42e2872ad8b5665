// The tokenizer stored in a GGUF file's metadata (tokenizer.ggml.*), so that a .gguf model needs
// no other file. Two models, as llama.cpp reads them (llama-vocab.cpp):
//   "llama": SentencePiece-style BPE over scored pieces with token types (byte fallback to
//            <0xXX> pieces, dummy-prefix space unless add_space_prefix is false): the
//            SentencePiece-BPE core of tokenizer.model.
//   "gpt2":  byte-level BPE with ranked merges and a pre-tokenizer named by tokenizer.ggml.pre
//            (the llama3 family and gpt2/default are supported): built as the equivalent
//            tokenizer.json and run by the tokenizer.json core.
// Control tokens (type 3) are never produced from text (llama.cpp with parse_special = false).
import { check, LlamaAdapterError } from '../core/errors.js';
import type { GgufFile, GgufValue } from '../core/gguf.js';
import { HfBpeTokenizer } from './hf-json.js';
import type { JsonObject } from './hf-pipeline.js';
import { PieceType, SentencePieceBpe } from './sentencepiece-bpe.js';
import type { Tokenizer } from './tokenizer.js';

/** llama.cpp's pre-tokenizer regexes by tokenizer.ggml.pre (llm_tokenizer_bpe). */
const LLAMA3_REGEX =
  "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const GPT2_REGEX = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
const PRE: Readonly<Record<string, { regex: string; ignoreMerges: boolean }>> = {
  llama3: { regex: LLAMA3_REGEX, ignoreMerges: true },
  'llama-v3': { regex: LLAMA3_REGEX, ignoreMerges: true },
  'llama-bpe': { regex: LLAMA3_REGEX, ignoreMerges: true },
  gpt2: { regex: GPT2_REGEX, ignoreMerges: false },
};

/** The tokenizer settings of a GGUF file besides the vocabulary (what generation needs). */
export interface GgufTokenizerInfo {
  addBos: boolean; // tokenizer.ggml.add_bos_token (llama.cpp's default: true for "llama", per pre-tokenizer for "gpt2")
  chatTemplate: string | null; // tokenizer.chat_template
}

function meta(f: GgufFile, key: string): GgufValue | undefined {
  return f.metadata.get(key)?.value;
}

/** Whether the file carries a tokenizer. */
export function hasGgufTokenizer(f: GgufFile): boolean {
  return f.metadata.has('tokenizer.ggml.model');
}

/** The tokenizer of a GGUF file's metadata. */
export function ggufTokenizer(f: GgufFile): Tokenizer & GgufTokenizerInfo {
  const p = f.path;
  const fail = (what: string): never => {
    throw new LlamaAdapterError(`${p}: ${what}`);
  };
  const model = meta(f, 'tokenizer.ggml.model');
  if (typeof model !== 'string') return fail('has no tokenizer (tokenizer.ggml.model is missing); pass --tokenizer PATH');
  const tokensV = meta(f, 'tokenizer.ggml.tokens');
  if (!(typeof tokensV === 'object' && tokensV.type === 8)) return fail('tokenizer.ggml.tokens is missing or not a string array');
  const tokens = tokensV.values;
  const n = tokens.length;
  check(n > 0, `${p}: tokenizer.ggml.tokens is empty`);
  const numArray = (key: string): ArrayLike<number> | null => {
    const v = meta(f, key);
    if (v === undefined) return null;
    if (!(typeof v === 'object' && v.type !== 8)) return fail(`${key} is not a numeric array`);
    if (v.values.length !== n) return fail(`${key} has ${v.values.length} entries, tokenizer.ggml.tokens has ${n}`);
    return v.values;
  };
  const id = (key: string): number | undefined => {
    const v = meta(f, key);
    if (v === undefined) return undefined;
    if (!(typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < n)) return fail(`${key} is ${JSON.stringify(v)}, expected a token id below ${n}`);
    return v;
  };
  const flag = (key: string): boolean | undefined => {
    const v = meta(f, key);
    if (v === undefined) return undefined;
    if (typeof v !== 'boolean') return fail(`${key} is ${JSON.stringify(v)}, expected a bool`);
    return v;
  };
  const typesRaw = numArray('tokenizer.ggml.token_type');
  const types = new Uint8Array(n).fill(PieceType.NORMAL);
  if (typesRaw) {
    for (let i = 0; i < n; i++) {
      const t = typesRaw[i];
      if (!(t >= PieceType.NORMAL && t <= PieceType.BYTE)) return fail(`tokenizer.ggml.token_type[${i}] is ${t}, expected 1..6`);
      types[i] = t;
    }
  }
  const tmpl = meta(f, 'tokenizer.chat_template');
  const chatTemplate = typeof tmpl === 'string' ? tmpl : null;

  if (model === 'llama') {
    const scoresRaw = numArray('tokenizer.ggml.scores');
    const scores = scoresRaw ? Float32Array.from(scoresRaw) : new Float32Array(n);
    const unkId = id('tokenizer.ggml.unknown_token_id') ?? 0;
    const addSpacePrefix = flag('tokenizer.ggml.add_space_prefix') ?? true;
    const tok = new SentencePieceBpe(
      { pieces: tokens, scores, types },
      {
        kind: 'gguf',
        path: p,
        bosId: id('tokenizer.ggml.bos_token_id') ?? 1,
        eosId: id('tokenizer.ggml.eos_token_id') ?? 2,
        unkId,
        addDummyPrefix: addSpacePrefix,
        removeExtraWhitespaces: false,
        escapeWhitespaces: true,
        spaceSymbol: '\u2581',
        byteFallback: types.includes(PieceType.BYTE),
      },
    );
    return Object.assign(tok, { addBos: flag('tokenizer.ggml.add_bos_token') ?? true, chatTemplate });
  }
  if (model === 'gpt2') {
    const preName = meta(f, 'tokenizer.ggml.pre');
    const preKey = typeof preName === 'string' ? preName : 'gpt2';
    const pre = PRE[preKey === 'default' ? 'gpt2' : preKey];
    if (!pre) return fail(`byte-level BPE pre-tokenizer "${preKey}" is not supported (supported: ${Object.keys(PRE).join(', ')}, default)`);
    const mergesV = meta(f, 'tokenizer.ggml.merges');
    if (!(typeof mergesV === 'object' && mergesV.type === 8)) return fail('tokenizer.ggml.merges is missing or not a string array');
    const vocab: JsonObject = {};
    const added: JsonObject[] = [];
    for (let i = 0; i < n; i++) {
      if (types[i] === PieceType.CONTROL || types[i] === PieceType.USER_DEFINED) {
        added.push({ id: i, content: tokens[i], special: types[i] === PieceType.CONTROL });
      } else if (!Object.hasOwn(vocab, tokens[i])) vocab[tokens[i]] = i;
    }
    const json: JsonObject = {
      model: { type: 'BPE', vocab, merges: mergesV.values, ignore_merges: pre.ignoreMerges, byte_fallback: false },
      added_tokens: added,
      normalizer: null,
      pre_tokenizer: {
        type: 'Sequence',
        pretokenizers: [
          { type: 'Split', pattern: { Regex: pre.regex }, behavior: 'Isolated', invert: false },
          { type: 'ByteLevel', add_prefix_space: false, use_regex: false },
        ],
      },
      decoder: { type: 'ByteLevel' },
    };
    const tok = new HfBpeTokenizer(json, p, {
      bos: tokens[id('tokenizer.ggml.bos_token_id') ?? -1],
      eos: tokens[id('tokenizer.ggml.eos_token_id') ?? -1],
    });
    // llama.cpp: the llama3 pre-tokenizers add BOS by default, gpt2 does not
    return Object.assign(tok, { addBos: flag('tokenizer.ggml.add_bos_token') ?? pre.ignoreMerges, chatTemplate });
  }
  return fail(`tokenizer model "${model}" is not supported (supported: llama, gpt2)`);
}
