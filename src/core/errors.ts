// User-facing errors. Anything a user can cause (a bad file, a bad flag, a bad record) is thrown
// as a LlamaAdapterError whose message names the file/field/line and what is wrong; the CLI
// prints just that one line (and the stack only with --verbose). Other errors are bugs.

export class LlamaAdapterError extends Error {
  override readonly name = 'LlamaAdapterError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** Throw a LlamaAdapterError unless `cond` holds. */
export function check(cond: unknown, message: string | (() => string)): asserts cond {
  if (!cond) throw new LlamaAdapterError(typeof message === 'string' ? message : message());
}

/**
 * The error a reader of `file` throws for `e`: a LlamaAdapterError that names the file stays as
 * it is (one that does not gets the file prefixed); anything else (a RangeError from a typed
 * array, a bug tripped by a corrupt input) becomes a LlamaAdapterError naming the file, with the
 * original kept as `cause` for --verbose.
 */
export function fileError(file: string, e: unknown): LlamaAdapterError {
  if (e instanceof LlamaAdapterError) {
    return e.message.includes(file) ? e : new LlamaAdapterError(`${file}: ${e.message}`, { cause: e.cause ?? e });
  }
  const msg = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  return new LlamaAdapterError(`${file}: cannot be read (${msg}); the file is corrupt or not in the expected format`, { cause: e });
}

/** Run a reader of `file`, turning whatever it throws into fileError(file, e) (the format boundary). */
export function atFile<T>(file: string, read: () => T): T {
  try {
    return read();
  } catch (e) {
    throw fileError(file, e);
  }
}
