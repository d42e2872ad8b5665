// The tokenizer interface every tokenizer format implements (HF tokenizer.json, SentencePiece
// tokenizer.model, llama2.c tokenizer.bin). Model and generation code only see this.

export interface EncodeOptions {
  bos?: boolean; // prepend the BOS id (default false)
  eos?: boolean; // append the EOS id (default false)
}

/** Turns ids into text as they arrive, emitting only complete UTF-8 characters. */
export interface StreamDecoder {
  /** Feed one id; returns the text that became complete (possibly ''). */
  push(id: number): string;
  /** Whatever is still buffered (incomplete UTF-8 becomes U+FFFD). */
  flush(): string;
}

export interface Tokenizer {
  readonly kind: 'hf-tokenizer-json' | 'sentencepiece-model' | 'llama2c-bin' | 'gguf';
  readonly path: string; // the file it was read from
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
  /** Text -> ids. SentencePiece-style tokenizers add the dummy-prefix space as SentencePiece does. */
  encode(text: string, options?: EncodeOptions): number[];
  /** ids -> text; BOS/EOS and other control tokens produce no text; the dummy-prefix space is removed. */
  decode(ids: readonly number[]): string;
  /**
   * A streaming decoder. `atStart`: the first piece follows BOS / starts the text, so its
   * dummy-prefix space is removed as decode() does; pass false when continuing after a prompt.
   */
  decoder(options?: { atStart?: boolean }): StreamDecoder;
  /** The piece string of an id (for inspection/debugging). */
  piece(id: number): string;
}
