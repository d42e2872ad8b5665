// A minimal Tokenizer for benchmarks: the bench feeds token ids directly, so encoding and
// decoding are never needed; this only carries the vocabulary size and BOS/EOS ids.

import type { EncodeOptions, StreamDecoder, Tokenizer } from '../src/tokenizer/tokenizer.js';

export class IdTokenizer implements Tokenizer {
  // The Tokenizer interface has no kind for "ids only"; this one never reads a file.
  readonly kind = 'llama2c-bin' as const;
  readonly path = '(bench: ids only)';

  constructor(
    readonly vocabSize: number,
    readonly bosId: number,
    readonly eosId: number,
  ) {}

  encode(_text: string, o: EncodeOptions = {}): number[] {
    const ids: number[] = [];
    if (o.bos) ids.push(this.bosId);
    if (o.eos) ids.push(this.eosId);
    return ids;
  }

  decode(_ids: readonly number[]): string {
    return '';
  }

  decoder(_o?: { atStart?: boolean }): StreamDecoder {
    return { push: () => '', flush: () => '' };
  }

  piece(id: number): string {
    return `<${id}>`;
  }
}

/** For the serve benchmark: every id decodes to " <id>", so each streamed token is a visible SSE chunk. */
export class IdTextTokenizer extends IdTokenizer {
  override decode(ids: readonly number[]): string {
    return ids.map((id) => ` ${id}`).join('');
  }

  override decoder(_o?: { atStart?: boolean }): StreamDecoder {
    return { push: (id) => ` ${id}`, flush: () => '' };
  }
}
