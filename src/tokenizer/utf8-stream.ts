// Incremental UTF-8 -> string conversion: bytes go in as they come, only complete characters come
// out; an incomplete multi-byte sequence waits for its next bytes (or becomes U+FFFD on flush).

export class Utf8Stream {
  private decoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

  /** Feed bytes; returns the characters they completed (possibly ''). */
  write(bytes: Uint8Array): string {
    return bytes.length === 0 ? '' : this.decoder.decode(bytes, { stream: true });
  }

  /** Ends the stream: whatever is still buffered (incomplete UTF-8 becomes U+FFFD). */
  flush(): string {
    return this.decoder.decode();
  }
}

const whole = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

/** Decodes a complete byte string (invalid or incomplete sequences become U+FFFD). */
export function utf8Decode(bytes: Uint8Array): string {
  return whole.decode(bytes);
}

const encoder = new TextEncoder();

export function utf8Encode(text: string): Uint8Array {
  return encoder.encode(text);
}
