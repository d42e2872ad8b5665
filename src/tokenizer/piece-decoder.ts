// ids -> text for every tokenizer here. Each id maps to the bytes it stands for (null for control
// tokens such as BOS/EOS/unk, which produce no text); bytes are joined and decoded as UTF-8, so
// byte-fallback pieces combine with their neighbours. The dummy-prefix space of the first piece
// is removed when the format asks for it (SentencePiece add_dummy_prefix, llama2.c after BOS).
import { LlamaAdapterError } from '../core/errors.js';
import type { StreamDecoder } from './tokenizer.js';
import { Utf8Stream, utf8Decode } from './utf8-stream.js';

export interface PieceBytes {
  /** Bytes of each id; null = control token (no text). */
  bytes: readonly (Uint8Array | null)[];
  /** 1 where a leading space of the first piece is a dummy prefix that may be stripped. */
  strippable: Uint8Array;
  /** Whether the format strips the dummy-prefix space at the start of the text. */
  stripLeadingSpace: boolean;
}

const SPACE = 0x20;

export class PieceDecoder {
  constructor(
    private readonly table: PieceBytes,
    private readonly path: string,
  ) {}

  private bytesOf(id: number): Uint8Array | null {
    const b = this.table.bytes[id];
    if (b === undefined || !Number.isInteger(id)) {
      throw new LlamaAdapterError(`${this.path}: token id ${id} is out of range (vocabulary has ${this.table.bytes.length} ids)`);
    }
    return b;
  }

  /** Bytes of `id` as they appear in the text; `first` = first piece with text at the start. */
  private emitted(id: number, first: boolean): Uint8Array | null {
    const b = this.bytesOf(id);
    if (b !== null && first && this.table.stripLeadingSpace && this.table.strippable[id] === 1 && b[0] === SPACE) {
      return b.subarray(1);
    }
    return b;
  }

  decode(ids: readonly number[]): string {
    const parts: Uint8Array[] = [];
    let total = 0;
    let first = true;
    for (const id of ids) {
      const b = this.emitted(id, first);
      if (b === null) continue;
      first = false;
      parts.push(b);
      total += b.length;
    }
    const all = new Uint8Array(total);
    let o = 0;
    for (const p of parts) {
      all.set(p, o);
      o += p.length;
    }
    return utf8Decode(all);
  }

  decoder(atStart = true): StreamDecoder {
    const stream = new Utf8Stream();
    let first = atStart;
    return {
      push: (id: number): string => {
        const b = this.emitted(id, first);
        if (b === null) return '';
        first = false;
        return stream.write(b);
      },
      flush: (): string => stream.flush(),
    };
  }
}

/** The byte of a `<0xXX>` byte-fallback piece, or -1. */
export function bytePieceValue(piece: string): number {
  if (piece.length !== 6 || !piece.startsWith('<0x') || piece[5] !== '>') return -1;
  const hex = piece.slice(3, 5);
  return /^[0-9A-Fa-f]{2}$/.test(hex) ? parseInt(hex, 16) : -1;
}

/** The `<0xXX>` piece string of a byte (upper-case hex, as SentencePiece writes it). */
export function bytePieceName(byte: number): string {
  return `<0x${byte.toString(16).toUpperCase().padStart(2, '0')}>`;
}
