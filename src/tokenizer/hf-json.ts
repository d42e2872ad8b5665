// Hugging Face tokenizer.json with a BPE model: SentencePiece-style (Llama 2, tinystories:
// Prepend/Replace normalizer or Metaspace, byte_fallback, merges ranked by position) and
// byte-level (GPT-2 / Llama 3: ByteLevel pre-tokenizer, regex split). Special added tokens are
// never matched in plain text (so "<s>" is ordinary text); non-special added tokens are.
import { LlamaAdapterError } from '../core/errors.js';
import { byteLevelAlphabet } from './byte-level.js';
import { bpeMerge } from './bpe-merge.js';
import {
  asObject,
  buildNormalizer,
  buildPreTokenizer,
  metaspaceScheme,
  type Fail,
  type Json,
  type JsonObject,
  type Normalizer,
  type PreTokenizer,
} from './hf-pipeline.js';
import { PieceDecoder, bytePieceName, bytePieceValue } from './piece-decoder.js';
import type { EncodeOptions, StreamDecoder, Tokenizer } from './tokenizer.js';
import { utf8Encode } from './utf8-stream.js';

/** Special-token names from tokenizer_config.json / special_tokens_map.json, if any. */
export interface HfSpecialNames {
  bos?: string;
  eos?: string;
}

/** Fill what `names` lacks from a parsed tokenizer_config.json or special_tokens_map.json (bos_token / eos_token). */
export function addSpecialNames(names: HfSpecialNames, cfg: unknown): void {
  const token = (v: unknown): string | undefined => {
    if (typeof v === 'string') return v;
    if (v !== null && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') {
      return (v as { content: string }).content;
    }
    return undefined;
  };
  const c = (cfg ?? {}) as { bos_token?: unknown; eos_token?: unknown };
  names.bos ??= token(c.bos_token);
  names.eos ??= token(c.eos_token);
}

interface AddedToken {
  id: number;
  content: string;
  special: boolean;
}

interface DecoderSpec {
  byteLevel: boolean;
  replacement: string | null; // what stands for a space in pieces (e.g. '▁')
  byteFallback: boolean; // <0xXX> pieces decode to raw bytes
  strip: boolean; // drop the leading space of the first piece
}

function parseDecoder(spec: Json | undefined, fail: Fail): DecoderSpec {
  const out: DecoderSpec = { byteLevel: false, replacement: null, byteFallback: false, strip: false };
  const visit = (j: Json | undefined): void => {
    const d = asObject(j);
    if (!d) return;
    switch (d.type) {
      case 'Sequence':
        for (const x of Array.isArray(d.decoders) ? d.decoders : []) visit(x);
        return;
      case 'ByteLevel':
        out.byteLevel = true;
        return;
      case 'Metaspace':
        out.replacement = typeof d.replacement === 'string' ? d.replacement : '\u2581';
        out.strip = metaspaceScheme(d) !== 'never';
        return;
      case 'Replace': {
        const p = asObject(d.pattern);
        if (!p || typeof p.String !== 'string' || d.content !== ' ') {
          fail(`unsupported Replace decoder ${JSON.stringify(d)}`);
        }
        out.replacement = p.String;
        return;
      }
      case 'ByteFallback':
        out.byteFallback = true;
        return;
      case 'Fuse':
        return;
      case 'Strip':
        if (d.content !== ' ' || (typeof d.stop === 'number' && d.stop !== 0)) fail(`unsupported Strip decoder ${JSON.stringify(d)}`);
        out.strip = typeof d.start === 'number' && d.start > 0;
        return;
      default:
        fail(`unsupported decoder type '${String(d.type)}'`);
    }
  };
  visit(spec);
  return out;
}

export class HfBpeTokenizer implements Tokenizer {
  readonly kind = 'hf-tokenizer-json' as const;
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
  private readonly vocab = new Map<string, number>();
  private readonly merges = new Map<string, Map<string, number>>(); // left -> right -> rank
  private readonly pieces: (string | undefined)[] = [];
  private readonly added: AddedToken[] = [];
  private readonly addedPattern: RegExp | null; // non-special added tokens, longest first
  private readonly normalizer: Normalizer | null;
  private readonly preTokenizer: PreTokenizer | null;
  private readonly byteFallback: boolean;
  private readonly unkToken: string | undefined;
  private readonly fuseUnk: boolean;
  private readonly ignoreMerges: boolean;
  private readonly pieceDecoder: PieceDecoder;
  private readonly cache = new Map<string, number[]>();
  private readonly mergeList: [string, string][] = []; // in rank order
  private readonly byteLevel: boolean;

  constructor(
    json: JsonObject,
    readonly path: string,
    names: HfSpecialNames = {},
  ) {
    const fail: Fail = (what) => {
      throw new LlamaAdapterError(`${path}: ${what}`);
    };
    const model = asObject(json.model);
    if (!model) fail('not a Hugging Face tokenizer.json (no "model" object)');
    const m = model;
    const type = typeof m.type === 'string' ? m.type : Array.isArray(m.merges) ? 'BPE' : 'unknown';
    if (type !== 'BPE') fail(`unsupported tokenizer.json model type '${type}' (only BPE is supported)`);
    for (const k of ['continuing_subword_prefix', 'end_of_word_suffix'] as const) {
      if (typeof m[k] === 'string' && m[k] !== '') fail(`unsupported BPE option ${k}=${JSON.stringify(m[k])}`);
    }

    const vocab = asObject(m.vocab);
    if (!vocab) fail('BPE model has no "vocab" object');
    // ids index arrays: each must lie below the number of entries the file holds (vocab plus
    // added tokens), so a corrupt id of 1e9 is refused instead of sizing an array by it
    const entries = Object.entries(vocab);
    const added = Array.isArray(json.added_tokens) ? json.added_tokens : [];
    const idLimit = entries.length + added.length;
    const goodId = (id: unknown): id is number => typeof id === 'number' && Number.isInteger(id) && id >= 0 && id < idLimit;
    for (const [piece, id] of entries) {
      if (!goodId(id))
        fail(
          `vocab entry ${JSON.stringify(piece)} has bad id ${JSON.stringify(id)} (ids must be integers from 0 below ${idLimit}, the number of tokens in the file)`,
        );
      this.vocab.set(piece, id);
      this.pieces[id] = piece;
    }

    if (!Array.isArray(m.merges)) fail('BPE model has no "merges" list');
    m.merges.forEach((entry, rank) => {
      let l: string | undefined;
      let r: string | undefined;
      if (typeof entry === 'string') {
        const sp = entry.indexOf(' ');
        if (sp > 0) [l, r] = [entry.slice(0, sp), entry.slice(sp + 1)];
      } else if (Array.isArray(entry) && entry.length === 2 && typeof entry[0] === 'string' && typeof entry[1] === 'string') {
        [l, r] = [entry[0], entry[1]];
      }
      if (l === undefined || r === undefined) return fail(`merge ${rank} is malformed: ${JSON.stringify(entry)}`);
      if (!this.vocab.has(l + r)) return; // HF refuses such files; a merge into nothing can never apply
      this.mergeList.push([l, r]);
      let inner = this.merges.get(l);
      if (!inner) this.merges.set(l, (inner = new Map()));
      if (!inner.has(r)) inner.set(r, rank);
    });

    added.forEach((t, i) => {
      const a = asObject(t);
      if (!a || typeof a.content !== 'string') fail(`added_tokens[${i}] is not an object with a string "content": ${JSON.stringify(t)}`);
      if (!goodId(a.id))
        fail(`added_tokens[${i}] ${JSON.stringify(a.content)} has bad id ${JSON.stringify(a.id)} (ids must be integers from 0 below ${idLimit})`);
      const tok: AddedToken = { id: a.id as number, content: a.content, special: a.special === true };
      this.added.push(tok);
      this.pieces[tok.id] = tok.content;
      if (!this.vocab.has(tok.content)) this.vocab.set(tok.content, tok.id);
    });
    const plain = this.added.filter((t) => !t.special && t.content.length > 0).map((t) => t.content);
    plain.sort((a, b) => b.length - a.length);
    this.addedPattern = plain.length ? new RegExp(plain.map((c) => c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|'), 'gu') : null;

    this.vocabSize = this.pieces.length;
    this.normalizer = buildNormalizer(json.normalizer, fail);
    this.preTokenizer = buildPreTokenizer(json.pre_tokenizer, fail);
    this.byteFallback = m.byte_fallback === true;
    this.unkToken = typeof m.unk_token === 'string' ? m.unk_token : undefined;
    this.fuseUnk = m.fuse_unk === true;
    this.ignoreMerges = m.ignore_merges === true;

    const idOf = (name: string | undefined): number | undefined =>
      name === undefined ? undefined : (this.added.find((t) => t.content === name)?.id ?? this.vocab.get(name));
    this.bosId = idOf(names.bos) ?? idOf('<s>') ?? 1;
    this.eosId = idOf(names.eos) ?? idOf('</s>') ?? 2;

    const decoderSpec = parseDecoder(json.decoder, fail);
    this.byteLevel = decoderSpec.byteLevel;
    this.pieceDecoder = this.buildDecoder(decoderSpec);
  }

  /**
   * The vocabulary as GGUF writes it: pieces by id, SentencePiece token types (special added
   * tokens are control tokens, other added ones user-defined), the merges in rank order, whether
   * it is byte-level, and whether encoding adds a dummy-prefix space.
   */
  exportVocab(): {
    pieces: string[];
    types: Int32Array;
    merges: readonly [string, string][];
    ids: ReadonlyMap<string, number>;
    byteLevel: boolean;
    dummyPrefix: boolean;
  } {
    const n = this.vocabSize;
    const pieces = Array.from({ length: n }, (_, i) => this.pieces[i] ?? `[PAD${i}]`);
    const types = new Int32Array(n).fill(1);
    for (let i = 0; i < n; i++) {
      if (this.pieces[i] === undefined) types[i] = 5;
      else if (this.byteFallback && bytePieceValue(pieces[i]) >= 0) types[i] = 6;
    }
    if (this.unkToken !== undefined && this.vocab.has(this.unkToken)) types[this.vocab.get(this.unkToken) as number] = 2;
    for (const t of this.added) types[t.id] = t.special ? 3 : 4;
    const first = this.byteLevel ? undefined : this.pieces[this.encode('a')[0]];
    return { pieces, types, merges: this.mergeList, ids: this.vocab, byteLevel: this.byteLevel, dummyPrefix: first?.startsWith('\u2581') ?? false };
  }

  private buildDecoder(spec: DecoderSpec): PieceDecoder {
    const n = this.vocabSize;
    const bytes: (Uint8Array | null)[] = new Array(n).fill(null);
    const strippable = new Uint8Array(n);
    const control = new Set(this.added.filter((t) => t.special).map((t) => t.id));
    const unkId = this.unkToken === undefined ? undefined : this.vocab.get(this.unkToken);
    if (unkId !== undefined) control.add(unkId);
    const plainAdded = new Set(this.added.filter((t) => !t.special).map((t) => t.id));
    const { charToByte } = byteLevelAlphabet();
    for (let id = 0; id < n; id++) {
      const piece = this.pieces[id];
      if (piece === undefined || control.has(id)) continue;
      if (plainAdded.has(id)) {
        bytes[id] = utf8Encode(piece);
        continue;
      }
      if (spec.byteLevel) {
        const out: number[] = [];
        for (const ch of piece) {
          const b = charToByte.get(ch);
          if (b !== undefined) out.push(b);
          else out.push(...utf8Encode(ch));
        }
        bytes[id] = Uint8Array.from(out);
        strippable[id] = 1;
        continue;
      }
      const b = spec.byteFallback || this.byteFallback ? bytePieceValue(piece) : -1;
      if (b >= 0) {
        bytes[id] = Uint8Array.of(b);
      } else {
        bytes[id] = utf8Encode(spec.replacement === null ? piece : piece.replaceAll(spec.replacement, ' '));
        strippable[id] = 1;
      }
    }
    return new PieceDecoder({ bytes, strippable, stripLeadingSpace: spec.strip }, this.path);
  }

  piece(id: number): string {
    const p = this.pieces[id];
    if (p === undefined) throw new LlamaAdapterError(`${this.path}: token id ${id} is out of range or unused`);
    return p;
  }

  encode(text: string, options: EncodeOptions = {}): number[] {
    const ids: number[] = [];
    if (options.bos) ids.push(this.bosId);
    let last = 0;
    const segment = (s: string, first: boolean): void => {
      if (s.length > 0) this.encodeSegment(s, first, ids);
    };
    if (this.addedPattern) {
      for (const m of text.matchAll(this.addedPattern)) {
        const at = m.index ?? 0;
        segment(text.slice(last, at), last === 0);
        ids.push(this.vocab.get(m[0]) as number);
        last = at + m[0].length;
      }
    }
    segment(text.slice(last), last === 0);
    if (options.eos) ids.push(this.eosId);
    return ids;
  }

  private encodeSegment(text: string, first: boolean, out: number[]): void {
    const normalized = this.normalizer ? this.normalizer(text) : text;
    const words = this.preTokenizer ? this.preTokenizer([{ text: normalized, first }]) : [{ text: normalized, first }];
    for (const w of words) {
      if (w.text.length === 0) continue;
      const cached = this.cache.get(w.text);
      if (cached) {
        out.push(...cached);
        continue;
      }
      const ids = this.encodeWord(w.text);
      if (w.text.length < 64) {
        if (this.cache.size > 20000) this.cache.clear();
        this.cache.set(w.text, ids);
      }
      for (const id of ids) out.push(id);
    }
  }

  private encodeWord(word: string): number[] {
    const whole = this.ignoreMerges ? this.vocab.get(word) : undefined;
    if (whole !== undefined) return [whole];
    const symbols: string[] = [];
    let lastUnk = false;
    for (const ch of word) {
      if (this.vocab.has(ch)) {
        symbols.push(ch);
        lastUnk = false;
        continue;
      }
      if (this.byteFallback) {
        const names = Array.from(utf8Encode(ch), bytePieceName);
        if (names.every((p) => this.vocab.has(p))) {
          symbols.push(...names);
          lastUnk = false;
          continue;
        }
      }
      if (this.unkToken === undefined || !this.vocab.has(this.unkToken)) {
        const cp = (ch.codePointAt(0) as number).toString(16).toUpperCase().padStart(4, '0');
        throw new LlamaAdapterError(`${this.path}: cannot encode U+${cp}: not in the vocabulary and the model has no unk_token`);
      }
      if (!(this.fuseUnk && lastUnk)) symbols.push(this.unkToken);
      lastUnk = true;
    }
    const merged = bpeMerge(symbols, (l, r) => this.merges.get(l)?.get(r));
    return merged.map((s) => this.vocab.get(s) as number);
  }

  decode(ids: readonly number[]): string {
    return this.pieceDecoder.decode(ids);
  }

  decoder(options: { atStart?: boolean } = {}): StreamDecoder {
    return this.pieceDecoder.decoder(options.atStart ?? true);
  }
}

/** Parses tokenizer.json text (BPE models only). */
export function parseHfTokenizerJson(text: string, path: string, names: HfSpecialNames = {}): HfBpeTokenizer {
  let json: Json;
  try {
    json = JSON.parse(text) as Json;
  } catch (e) {
    throw new LlamaAdapterError(`${path}: not a tokenizer.json (invalid JSON: ${(e as Error).message})`);
  }
  const obj = asObject(json);
  if (!obj) throw new LlamaAdapterError(`${path}: not a Hugging Face tokenizer.json (top level is not an object)`);
  return new HfBpeTokenizer(obj, path, names);
}
