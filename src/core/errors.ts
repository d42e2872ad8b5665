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
