// SentencePiece BPE over a scored piece table, shared by tokenizer.model and llama2.c
// tokenizer.bin: normalize (escape spaces, dummy prefix), split into code points, merge the pair
// whose joined piece has the highest score, fall back to <0xXX> byte pieces (or unk) for what is
// not in the vocabulary. Control/unknown/byte pieces are never produced by merging, so text like
// "<s>" is encoded as ordinary characters.
import { LlamaAdapterError } from '../core/errors.js';
import { bpeMerge } from './bpe-merge.js';
import { PieceDecoder, bytePieceValue } from './piece-decoder.js';
import type { EncodeOptions, StreamDecoder, Tokenizer } from './tokenizer.js';
import { utf8Encode } from './utf8-stream.js';

/** SentencePiece piece types (sentencepiece_model.proto). */
export const PieceType = {
  NORMAL: 1,
  UNKNOWN: 2,
  CONTROL: 3,
  USER_DEFINED: 4,
  UNUSED: 5,
  BYTE: 6,
} as const;

export interface SentencePieceVocab {
  pieces: readonly string[];
  /** UTF-8 bytes of each piece as stored (llama2.c pieces may differ from `pieces` if not UTF-8). */
  pieceBytes?: readonly Uint8Array[];
  scores: Float32Array;
  types: Uint8Array; // PieceType per id
}

export interface SentencePieceOptions {
  kind: Tokenizer['kind'];
  path: string;
  bosId: number;
  eosId: number;
  unkId: number;
  addDummyPrefix: boolean;
  removeExtraWhitespaces: boolean;
  escapeWhitespaces: boolean;
  /** What a space becomes in pieces: '▁' (U+2581) in .model files, ' ' in llama2.c .bin files. */
  spaceSymbol: string;
  byteFallback: boolean;
  /** Unicode normalization applied first (approximates SentencePiece's nmt_nfkc charsmaps). */
  unicodeNormalization?: 'NFKC' | 'NFC';
  /** Whether decode strips the leading space of the first piece (default: addDummyPrefix). */
  stripLeadingSpace?: boolean;
}

export class SentencePieceBpe implements Tokenizer {
  readonly kind: Tokenizer['kind'];
  readonly path: string;
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
  private readonly mergeable = new Map<string, number>(); // NORMAL, USER_DEFINED, UNUSED pieces
  private readonly byteIds = new Int32Array(256).fill(-1);
  private readonly userDefined = new Map<string, string[]>(); // first char -> pieces, longest first
  private readonly pieceDecoder: PieceDecoder;

  constructor(
    /** The piece table (pieces, scores, types), e.g. for converting to other formats. */
    readonly vocab: SentencePieceVocab,
    private readonly options: SentencePieceOptions,
  ) {
    this.kind = options.kind;
    this.path = options.path;
    this.vocabSize = vocab.pieces.length;
    this.bosId = options.bosId;
    this.eosId = options.eosId;
    const { pieces, types } = vocab;
    const bytes: (Uint8Array | null)[] = new Array(pieces.length);
    const strippable = new Uint8Array(pieces.length);
    for (let id = 0; id < pieces.length; id++) {
      const piece = pieces[id];
      const type = types[id];
      if (type === PieceType.NORMAL || type === PieceType.USER_DEFINED || type === PieceType.UNUSED) {
        if (!this.mergeable.has(piece)) this.mergeable.set(piece, id);
        if (type === PieceType.USER_DEFINED && piece.length > 0) {
          const list = this.userDefined.get(piece[0]) ?? [];
          list.push(piece);
          this.userDefined.set(piece[0], list);
        }
      }
      if (type === PieceType.BYTE) {
        const b = bytePieceValue(piece);
        if (b >= 0) {
          if (this.byteIds[b] < 0) this.byteIds[b] = id;
          bytes[id] = Uint8Array.of(b);
        } else {
          bytes[id] = null;
        }
      } else if (type === PieceType.CONTROL || type === PieceType.UNKNOWN) {
        bytes[id] = null;
      } else {
        const raw = vocab.pieceBytes?.[id] ?? utf8Encode(piece);
        bytes[id] = options.spaceSymbol === ' ' ? raw : utf8Encode(piece.replaceAll(options.spaceSymbol, ' '));
        strippable[id] = 1;
      }
    }
    for (const list of this.userDefined.values()) list.sort((a, b) => b.length - a.length);
    this.pieceDecoder = new PieceDecoder({ bytes, strippable, stripLeadingSpace: options.stripLeadingSpace ?? options.addDummyPrefix }, options.path);
  }

  piece(id: number): string {
    const p = this.vocab.pieces[id];
    if (p === undefined) {
      throw new LlamaAdapterError(`${this.path}: token id ${id} is out of range (vocabulary has ${this.vocabSize} ids)`);
    }
    return p;
  }

  /** The normalized string SentencePiece segments (spaces escaped, dummy prefix added). */
  normalize(text: string): string {
    const o = this.options;
    let s = o.unicodeNormalization ? text.normalize(o.unicodeNormalization) : text;
    if (o.removeExtraWhitespaces) s = s.replace(/ {2,}/g, ' ').replace(/^ | $/g, '');
    if (s.length === 0) return '';
    if (o.addDummyPrefix) s = ` ${s}`;
    return o.escapeWhitespaces ? s.replaceAll(' ', o.spaceSymbol) : s;
  }

  encode(text: string, options: EncodeOptions = {}): number[] {
    const ids: number[] = [];
    if (options.bos) ids.push(this.bosId);
    const normalized = this.normalize(text);
    if (normalized.length > 0) this.segment(normalized, ids);
    if (options.eos) ids.push(this.eosId);
    return ids;
  }

  private segment(normalized: string, out: number[]): void {
    const { symbols, frozen } = this.split(normalized);
    const scores = this.vocab.scores;
    const unused = new Map<string, [string, string]>();
    const merged = bpeMerge(
      symbols,
      (l, r) => {
        const id = this.mergeable.get(l + r);
        return id === undefined ? undefined : -scores[id];
      },
      frozen,
      (m, l, r) => {
        const id = this.mergeable.get(m);
        if (id !== undefined && this.vocab.types[id] === PieceType.UNUSED) unused.set(m, [l, r]);
      },
    );
    let lastWasUnk = false;
    const emit = (s: string): void => {
      const id = this.mergeable.get(s);
      if (id !== undefined) {
        const parts = this.vocab.types[id] === PieceType.UNUSED ? unused.get(s) : undefined;
        if (parts) {
          emit(parts[0]);
          emit(parts[1]);
          return;
        }
        out.push(id);
        lastWasUnk = false;
        return;
      }
      if (this.options.byteFallback) {
        const bytes = utf8Encode(s);
        if (bytes.every((b) => this.byteIds[b] >= 0)) {
          for (const b of bytes) out.push(this.byteIds[b]);
          lastWasUnk = false;
          return;
        }
      }
      if (!lastWasUnk) out.push(this.options.unkId); // consecutive unknowns fuse into one
      lastWasUnk = true;
    };
    for (const s of merged) emit(s);
  }

  /** Code points, except that user-defined pieces match whole (longest first) and stay frozen. */
  private split(s: string): { symbols: string[]; frozen?: boolean[] } {
    if (this.userDefined.size === 0) return { symbols: Array.from(s) };
    const symbols: string[] = [];
    const frozen: boolean[] = [];
    let i = 0;
    outer: while (i < s.length) {
      for (const u of this.userDefined.get(s[i]) ?? []) {
        if (s.startsWith(u, i)) {
          symbols.push(u);
          frozen.push(true);
          i += u.length;
          continue outer;
        }
      }
      const cp = s.codePointAt(i) as number;
      const ch = String.fromCodePoint(cp);
      symbols.push(ch);
      frozen.push(false);
      i += ch.length;
    }
    return { symbols, frozen };
  }

  decode(ids: readonly number[]): string {
    return this.pieceDecoder.decode(ids);
  }

  decoder(options: { atStart?: boolean } = {}): StreamDecoder {
    return this.pieceDecoder.decoder(options.atStart ?? true);
  }
}
