// Public library API of llama-adapter.

export { loadModel, type LoadModelOptions } from './model/load.js';
export { LlamaModel, type ForwardOptions, type LossAndGrads, type ModelInfo } from './model/model.js';
export type { LlamaConfig } from './core/config.js';
export { parameterCount } from './core/config.js';
export { loadTokenizer } from './tokenizer/load.js';
export type { Tokenizer, EncodeOptions, StreamDecoder } from './tokenizer/tokenizer.js';
export { readModelFile } from './formats/registry.js';
export type { ModelFile, ModelFormat } from './formats/model-file.js';
export { Adapter, createAdapter, isAdapterParam, type AdapterConfig, type CreateAdapterOptions } from './methods/v1/adapter.js';
export { saveAdapter, readAdapterInfo } from './methods/v1/file.js';
export {
  loadAdapter,
  readAdapterTensors,
  detectAdapterFormat,
  writeAdapterAs,
  WRITE_FORMATS,
  type LoadAdapterOptions,
  type WriteFormat,
} from './methods/v1/interop/registry.js';
export { ADAPTER_FORMATS, fromAdapter, type AdapterFormat, type AdapterTensors } from './methods/v1/interop/tensors.js';
export { PROMPT_PROJECTIONS, type PromptProjection } from './methods/v1/prompt-projection.js';
export { GATE_RULES, type GateMode } from './methods/v1/gate.js';
export { generate, generateBatch, type GenerateOptions, type GenerationPiece, type GenerationResult, type FinishReason } from './generate/generate.js';
export { Engine, type EngineOptions, type EngineRequest, type EngineEvent } from './generate/engine.js';
export { trainableTensors, type AdapterMethod, type PromptSource, type PromptLayer } from './model/method.js';
export { getBackend, type BackendName } from './backend/index.js';
export type { Backend } from './backend/backend.js';
export { LlamaAdapterError } from './core/errors.js';
export { finetune, evaluate, readInstructionData, type FinetuneOptions, type FinetuneProgress, type FinetuneResult } from './train/finetune.js';
export { tokenizeExample } from './train/data.js';
export { PROMPT_STYLES, type InstructionRecord, type PromptStyleName } from './train/prompt-styles.js';
export { createServer, Server, type ServeOptions } from './serve/server.js';
