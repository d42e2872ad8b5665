// NaN/Inf checks on weights read from files (llama.cpp's --check-tensors): a corrupt or diverged
// file must be refused at load, naming the tensor, not produce NaN logits later.
import { LlamaAdapterError } from './errors.js';

/** Index of the first NaN or +-Inf value in `a`, or -1. (x - x is 0 for every finite x, NaN otherwise.) */
export function firstNonFinite(a: ArrayLike<number>): number {
  for (let i = 0; i < a.length; i++) {
    const x = a[i];
    if (x - x !== 0) return i;
  }
  return -1;
}

/** Throw a LlamaAdapterError naming the file and the tensor unless every value of `a` is finite. */
export function checkFinite(file: string, tensor: string, a: ArrayLike<number>): void {
  const i = firstNonFinite(a);
  if (i >= 0) {
    throw new LlamaAdapterError(
      `${file}: tensor "${tensor}" holds a non-finite value (${a[i]} at element ${i} of ${a.length}): the file is corrupt or the run diverged`,
    );
  }
}
