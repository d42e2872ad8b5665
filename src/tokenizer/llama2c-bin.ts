// Reads a llama2.c tokenizer.bin: int32 max_token_length, then per piece float32 score, int32
// length, bytes. The vocabulary size is not stored: the caller may give it, else the file is read
// to its end. Encoding follows llama2.c run.c (dummy prefix " ", best-score pair merging, byte
// fallback to <0xXX> pieces); ids 0/1/2 are <unk>/BOS/EOS as llama2.c assumes. Unlike run.c,
// merges never produce the control pieces (0..2) or <0xXX> byte pieces, so text such as "<s>"
// stays ordinary text, exactly as in SentencePiece.
import { LlamaAdapterError } from '../core/errors.js';
import { bytePieceValue } from './piece-decoder.js';
import { PieceType, SentencePieceBpe } from './sentencepiece-bpe.js';

export interface Llama2cBinOptions {
  /** Number of pieces to read; default: read until the end of the file. */
  vocabSize?: number;
}

export function parseLlama2cTokenizer(buf: Uint8Array, path: string, options: Llama2cBinOptions = {}): SentencePieceBpe {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const bad = (what: string): never => {
    throw new LlamaAdapterError(`${path}: not a valid llama2.c tokenizer.bin (${what})`);
  };
  if (buf.length < 4) bad(`truncated: ${buf.length} bytes, no header`);
  const maxLen = dv.getInt32(0, true);
  if (maxLen <= 0 || maxLen > 1 << 16) bad(`max_token_length ${maxLen} is implausible`);
  const want = options.vocabSize;
  if (want !== undefined && (!Number.isInteger(want) || want <= 0)) {
    throw new LlamaAdapterError(`${path}: vocabulary size ${want} must be a positive integer`);
  }

  const utf8 = new TextDecoder('utf-8', { fatal: false });
  const pieces: string[] = [];
  const pieceBytes: Uint8Array[] = [];
  const scores: number[] = [];
  let o = 4;
  while (want === undefined ? o < buf.length : pieces.length < want) {
    const i = pieces.length;
    if (buf.length - o < 8) bad(`truncated in piece ${i} at byte ${o} of ${buf.length}`);
    const score = dv.getFloat32(o, true);
    const len = dv.getInt32(o + 4, true);
    o += 8;
    if (len < 0 || len > maxLen) bad(`piece ${i} has length ${len} (max_token_length ${maxLen}) at byte ${o - 4}`);
    if (buf.length - o < len) bad(`truncated in piece ${i} at byte ${o} of ${buf.length}`);
    if (Number.isNaN(score)) bad(`piece ${i} has a NaN score`);
    const bytes = buf.slice(o, o + len);
    o += len;
    pieces.push(utf8.decode(bytes));
    pieceBytes.push(bytes);
    scores.push(score);
  }
  if (pieces.length < 3) bad(`only ${pieces.length} pieces`);

  const types = new Uint8Array(pieces.length).fill(PieceType.NORMAL);
  types[0] = PieceType.UNKNOWN;
  types[1] = PieceType.CONTROL;
  types[2] = PieceType.CONTROL;
  let bytePieces = 0;
  for (let id = 3; id < pieces.length; id++) {
    if (bytePieceValue(pieces[id]) >= 0) {
      types[id] = PieceType.BYTE;
      bytePieces++;
    }
  }
  return new SentencePieceBpe(
    { pieces, pieceBytes, scores: Float32Array.from(scores), types },
    {
      kind: 'llama2c-bin',
      path,
      bosId: 1,
      eosId: 2,
      unkId: 0,
      addDummyPrefix: true,
      removeExtraWhitespaces: false,
      escapeWhitespaces: false,
      spaceSymbol: ' ',
      byteFallback: bytePieces > 0,
      stripLeadingSpace: true,
    },
  );
}
