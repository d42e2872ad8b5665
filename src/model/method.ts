// The one hook through which an adapter extends the base model: at each layer the attention
// asks the row's PromptSource for that layer's prompt keys/values and effective gates, and adds
// the gated prompt branch. The base model knows nothing else about adapters.

export interface PromptLayer {
  K: number; // prompt length
  pk: Float32Array; // (K, nKvHeads*hs) prompt keys  P Wk^T (no norm, no RoPE)
  pv: Float32Array; // (K, nKvHeads*hs) prompt values P Wv^T
  gate: Float32Array; // (nHeads) effective gate per head (tanh applied if the convention says so)
}

export interface PromptSource {
  /** Lowest adapted layer (layers below it are untouched). */
  readonly firstLayer: number;
  /** Prompt keys/values and gates of layer l, or null if l is not adapted. Cached per adapter version. */
  promptLayer(l: number): PromptLayer | null;
}
