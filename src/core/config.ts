// The architecture of a LLaMA-family model, independent of the file format it came from.
// Every loader (HF directory, llama2.c .bin, later GGUF) produces one of these.

/** Llama 3.1-style RoPE frequency scaling (`rope_scaling.rope_type == "llama3"` in HF configs). */
export interface Llama3RopeScaling {
  factor: number; // how much longer the target context is than the original
  lowFreqFactor: number; // wavelengths above originalMaxPos/lowFreqFactor are divided by `factor`
  highFreqFactor: number; // wavelengths below originalMaxPos/highFreqFactor are kept
  originalMaxPos: number; // original_max_position_embeddings
}

export interface LlamaConfig {
  dim: number; // model width (hidden_size)
  nLayers: number; // transformer blocks
  nHeads: number; // query heads
  nKvHeads: number; // key/value heads (GQA: query head h reads kv head floor(h / (nHeads/nKvHeads)))
  headDim: number; // dim / nHeads
  hiddenDim: number; // SwiGLU width (intermediate_size)
  vocabSize: number; // rows of the embedding and the output head
  maxSeqLen: number; // context length the model was trained for
  normEps: number; // RMSNorm epsilon
  ropeTheta: number; // RoPE base
  ropeScaling: Llama3RopeScaling | null; // null = plain RoPE
  tiedEmbeddings: boolean; // output head shares the embedding matrix
  bosId: number; // beginning-of-sequence token id
  eosId: number; // end-of-sequence token id
}

/** Parameter count of the frozen base model (tied head counted once). */
export function parameterCount(c: LlamaConfig): number {
  const kv = c.nKvHeads * c.headDim;
  const perLayer = 2 * c.dim + c.dim * c.dim * 2 + 2 * c.dim * kv + 3 * c.dim * c.hiddenDim;
  return c.vocabSize * c.dim * (c.tiedEmbeddings ? 1 : 2) + c.dim + c.nLayers * perLayer;
}
