// Reads a SentencePiece tokenizer.model (protobuf ModelProto) by hand: pieces with scores and
// types, the TrainerSpec ids/model type/byte fallback, and the NormalizerSpec flags. Only BPE
// models are supported (Llama 1/2 and their kin); unigram/word/char models are refused.
import { LlamaAdapterError } from '../core/errors.js';
import { PieceType, SentencePieceBpe } from './sentencepiece-bpe.js';

const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_LEN = 2;
const WIRE_FIXED32 = 5;

const MODEL_TYPES: Record<number, string> = { 1: 'unigram', 2: 'bpe', 3: 'word', 4: 'char' };

/** A cursor over protobuf wire data; every read checks bounds. */
class ProtoReader {
  pos: number;

  constructor(
    private readonly buf: Uint8Array,
    start: number,
    readonly end: number,
    private readonly fail: (what: string) => never,
  ) {
    this.pos = start;
  }

  get done(): boolean {
    return this.pos >= this.end;
  }

  /** A varint's low 32 bits as an unsigned number (enough for the int32/enum/bool fields here). */
  varint(): number {
    let lo = 0;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) this.fail('truncated varint');
      const b = this.buf[this.pos++];
      if (i < 5) lo |= (b & 0x7f) << (7 * i);
      if ((b & 0x80) === 0) return lo >>> 0;
    }
    return this.fail('varint longer than 10 bytes');
  }

  /** A length: must fit in what is left. */
  length(): number {
    const start = this.pos;
    let n = 0;
    for (let i = 0; ; i++) {
      if (this.pos >= this.end) this.fail('truncated length');
      const b = this.buf[this.pos++];
      n += (b & 0x7f) * 2 ** (7 * i);
      if ((b & 0x80) === 0) break;
      if (i >= 5) this.fail(`bad length at byte ${start}`);
    }
    if (n > this.end - this.pos) this.fail(`field of ${n} bytes at byte ${start} runs past the end`);
    return n;
  }

  tag(): { field: number; wire: number } {
    const at = this.pos;
    const t = this.varint();
    const field = t >>> 3;
    const wire = t & 7;
    if (field === 0 || (wire !== WIRE_VARINT && wire !== WIRE_FIXED64 && wire !== WIRE_LEN && wire !== WIRE_FIXED32)) {
      this.fail(`invalid field tag 0x${t.toString(16)} at byte ${at}`);
    }
    return { field, wire };
  }

  /** The bounds of a length-delimited field's payload. */
  sub(): [number, number] {
    const n = this.length();
    const s = this.pos;
    this.pos += n;
    return [s, s + n];
  }

  float32(): number {
    if (this.end - this.pos < 4) this.fail('truncated float');
    const v = new DataView(this.buf.buffer, this.buf.byteOffset + this.pos, 4).getFloat32(0, true);
    this.pos += 4;
    return v;
  }

  skip(wire: number): void {
    if (wire === WIRE_VARINT) this.varint();
    else if (wire === WIRE_LEN) this.sub();
    else {
      const n = wire === WIRE_FIXED64 ? 8 : 4;
      if (this.end - this.pos < n) this.fail('truncated fixed-width field');
      this.pos += n;
    }
  }

  expect(wire: number, want: number, name: string): void {
    if (wire !== want) this.fail(`field ${name} has wire type ${wire}, expected ${want}`);
  }

  /** A varint field's value, after checking its wire type. */
  varintField(wire: number, name: string): number {
    this.expect(wire, WIRE_VARINT, name);
    return this.varint();
  }
}

interface Trainer {
  modelType: number;
  byteFallback: boolean;
  treatWhitespaceAsSuffix: boolean;
  unkId: number;
  bosId: number;
  eosId: number;
}

interface Normalizer {
  name: string;
  addDummyPrefix: boolean;
  removeExtraWhitespaces: boolean;
  escapeWhitespaces: boolean;
}

/** Parses a SentencePiece ModelProto (BPE only) into a tokenizer. */
export function parseSentencePieceModel(buf: Uint8Array, path: string): SentencePieceBpe {
  const fail = (what: string): never => {
    throw new LlamaAdapterError(`${path}: not a valid SentencePiece model (corrupt or truncated protobuf: ${what})`);
  };
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  const text = (s: number, e: number): string => {
    try {
      return utf8.decode(buf.subarray(s, e));
    } catch {
      return fail(`invalid UTF-8 in a string at byte ${s}`);
    }
  };

  const pieces: string[] = [];
  const scores: number[] = [];
  const types: number[] = [];
  const trainer: Trainer = { modelType: 1, byteFallback: false, treatWhitespaceAsSuffix: false, unkId: 0, bosId: 1, eosId: 2 };
  const norm: Normalizer = { name: '', addDummyPrefix: true, removeExtraWhitespaces: true, escapeWhitespaces: true };

  let sawTrainer = false;
  const top = new ProtoReader(buf, 0, buf.length, fail);
  while (!top.done) {
    const { field, wire } = top.tag();
    if (field === 1) {
      top.expect(wire, WIRE_LEN, 'pieces');
      const [s, e] = top.sub();
      const r = new ProtoReader(buf, s, e, fail);
      let piece: string | undefined;
      let score = 0;
      let type: number = PieceType.NORMAL;
      while (!r.done) {
        const t = r.tag();
        if (t.field === 1) {
          r.expect(t.wire, WIRE_LEN, 'piece');
          const [a, b] = r.sub();
          piece = text(a, b);
        } else if (t.field === 2) {
          r.expect(t.wire, WIRE_FIXED32, 'score');
          score = r.float32();
        } else if (t.field === 3) {
          type = r.varintField(t.wire, 'type');
        } else r.skip(t.wire);
      }
      if (piece === undefined) fail(`piece ${pieces.length} has no text`);
      if (type < PieceType.NORMAL || type > PieceType.BYTE) fail(`piece ${pieces.length} has unknown type ${type}`);
      pieces.push(piece as string);
      scores.push(score);
      types.push(type);
    } else if (field === 2) {
      top.expect(wire, WIRE_LEN, 'trainer_spec');
      sawTrainer = true;
      const [s, e] = top.sub();
      const r = new ProtoReader(buf, s, e, fail);
      while (!r.done) {
        const t = r.tag();
        const v = (): number => r.varintField(t.wire, `trainer_spec.${t.field}`);
        if (t.field === 3) trainer.modelType = v();
        else if (t.field === 24) trainer.treatWhitespaceAsSuffix = v() !== 0;
        else if (t.field === 35) trainer.byteFallback = v() !== 0;
        else if (t.field === 40) trainer.unkId = v() | 0;
        else if (t.field === 41) trainer.bosId = v() | 0;
        else if (t.field === 42) trainer.eosId = v() | 0;
        else r.skip(t.wire);
      }
    } else if (field === 3) {
      top.expect(wire, WIRE_LEN, 'normalizer_spec');
      const [s, e] = top.sub();
      const r = new ProtoReader(buf, s, e, fail);
      while (!r.done) {
        const t = r.tag();
        const flag = (): boolean => r.varintField(t.wire, `normalizer_spec.${t.field}`) !== 0;
        if (t.field === 1) {
          r.expect(t.wire, WIRE_LEN, 'normalizer_spec.name');
          const [a, b] = r.sub();
          norm.name = text(a, b);
        } else if (t.field === 3) norm.addDummyPrefix = flag();
        else if (t.field === 4) norm.removeExtraWhitespaces = flag();
        else if (t.field === 5) norm.escapeWhitespaces = flag();
        else r.skip(t.wire);
      }
    } else {
      top.skip(wire);
    }
  }

  if (pieces.length === 0) {
    throw new LlamaAdapterError(`${path}: not a SentencePiece model (no pieces found)`);
  }
  if (!sawTrainer) fail(`no trainer_spec after ${pieces.length} pieces, so the model type is unknown`);
  const modelType = MODEL_TYPES[trainer.modelType] ?? `type ${trainer.modelType}`;
  if (trainer.modelType !== 2) {
    throw new LlamaAdapterError(`${path}: unsupported SentencePiece model type '${modelType}' (only BPE is supported)`);
  }
  if (trainer.treatWhitespaceAsSuffix) {
    throw new LlamaAdapterError(`${path}: unsupported SentencePiece option treat_whitespace_as_suffix`);
  }
  if (trainer.unkId < 0 || trainer.unkId >= pieces.length) {
    throw new LlamaAdapterError(`${path}: unk_id ${trainer.unkId} is outside the ${pieces.length} pieces`);
  }
  const name = norm.name.toLowerCase();
  return new SentencePieceBpe(
    { pieces, scores: Float32Array.from(scores), types: Uint8Array.from(types) },
    {
      kind: 'sentencepiece-model',
      path,
      bosId: trainer.bosId,
      eosId: trainer.eosId,
      unkId: trainer.unkId,
      addDummyPrefix: norm.addDummyPrefix,
      removeExtraWhitespaces: norm.removeExtraWhitespaces,
      escapeWhitespaces: norm.escapeWhitespaces,
      spaceSymbol: '\u2581',
      byteFallback: trainer.byteFallback,
      // The precompiled charsmap of nmt_nfkc* normalizers is approximated by Unicode NFKC.
      unicodeNormalization: name.includes('nfkc') ? 'NFKC' : undefined,
    },
  );
}
