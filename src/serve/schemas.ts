// JSON Schemas of the request bodies (fastify validates every body with them, type coercion off,
// so "0.5" is a 400, not 0.5). Fields and ranges follow OpenAI's API reference; fields we do not
// implement are refused by name (additionalProperties: false) rather than silently ignored.

import { GATE_RULES, type GateMode } from '../methods/v1/gate.js';
import { PROMPT_STYLES, type PromptStyleName } from '../train/prompt-styles.js';

type Schema = Record<string, unknown>;
const nullable = (s: Schema): Schema => ({ anyOf: [s, { type: 'null' }] });
/** An object with exactly these properties (others are refused by name). */
const strict = (required: string[], properties: Schema): Schema => ({ type: 'object', required, additionalProperties: false, properties });

const sampling = {
  model: { type: 'string', minLength: 1, maxLength: 256 },
  max_tokens: nullable({ type: 'integer', minimum: 0, maximum: 1_000_000 }),
  temperature: nullable({ type: 'number', minimum: 0, maximum: 2 }),
  top_p: nullable({ type: 'number', exclusiveMinimum: 0, maximum: 1 }),
  n: nullable({ type: 'integer', minimum: 1, maximum: 128 }),
  stop: nullable({
    anyOf: [
      { type: 'string', maxLength: 1000 },
      { type: 'array', maxItems: 4, items: { type: 'string', minLength: 1, maxLength: 1000 } },
    ],
  }),
  seed: nullable({ type: 'integer', minimum: -9007199254740991, maximum: 9007199254740991 }),
  presence_penalty: nullable({ type: 'number', minimum: -2, maximum: 2 }),
  frequency_penalty: nullable({ type: 'number', minimum: -2, maximum: 2 }),
  user: { type: 'string', maxLength: 512 },
  ignore_eos: nullable({ type: 'boolean' }), // vLLM's extension: generate max_tokens tokens even past EOS (benchmarks)
  stream: nullable({ type: 'boolean' }),
  stream_options: nullable({ type: 'object', additionalProperties: false, properties: { include_usage: { type: 'boolean' } } }),
} as const;

const textPart = strict(['type', 'text'], { type: { const: 'text' }, text: { type: 'string' } });
// OpenAI's image part: a data: URL (JPEG / PNG, base64) or, on this server, a file under --image-dir
const imagePart = strict(['type', 'image_url'], {
  type: { const: 'image_url' },
  image_url: strict(['url'], { url: { type: 'string', minLength: 1 }, detail: { enum: ['auto', 'low', 'high'] } }),
});

export const chatBodySchema = strict(['model', 'messages'], {
  ...sampling,
  max_completion_tokens: nullable({ type: 'integer', minimum: 0, maximum: 1_000_000 }),
  logprobs: nullable({ type: 'boolean' }),
  top_logprobs: nullable({ type: 'integer', minimum: 0, maximum: 20 }),
  messages: {
    type: 'array',
    minItems: 1,
    maxItems: 1024,
    items: strict(['role', 'content'], {
      role: { enum: ['system', 'developer', 'user', 'assistant'] },
      content: { anyOf: [{ type: 'string' }, { type: 'array', maxItems: 256, items: { anyOf: [textPart, imagePart] } }] },
      name: { type: 'string', maxLength: 256 },
    }),
  },
});

export const completionBodySchema = strict(['model', 'prompt'], {
  ...sampling,
  logprobs: nullable({ type: 'integer', minimum: 0, maximum: 5 }),
  echo: nullable({ type: 'boolean' }),
  prompt: {
    anyOf: [
      { type: 'string' },
      { type: 'array', minItems: 1, maxItems: 128, items: { type: 'string' } },
      { type: 'array', minItems: 1, items: { type: 'integer', minimum: 0, maximum: 2147483647 } },
      { type: 'array', minItems: 1, maxItems: 128, items: { type: 'array', minItems: 1, items: { type: 'integer', minimum: 0, maximum: 2147483647 } } },
    ],
  },
});

const adapterName = { type: 'string', minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9][A-Za-z0-9._:-]*$' };
const adapterPath = { type: 'string', minLength: 1, maxLength: 4096 };
// ours {name, path} or vLLM's {lora_name, lora_path}
export const loadAdapterBodySchema = strict([], { name: adapterName, path: adapterPath, lora_name: adapterName, lora_path: adapterPath });
export const unloadAdapterBodySchema = strict(['lora_name'], { lora_name: adapterName });

// ---- request body types (what the schemas admit)

export type Nullable<T> = T | null | undefined;

export interface SamplingBody {
  model: string;
  max_tokens?: Nullable<number>;
  temperature?: Nullable<number>;
  top_p?: Nullable<number>;
  n?: Nullable<number>;
  stop?: Nullable<string | string[]>;
  seed?: Nullable<number>;
  presence_penalty?: Nullable<number>;
  frequency_penalty?: Nullable<number>;
  user?: string;
  ignore_eos?: Nullable<boolean>;
  stream?: Nullable<boolean>;
  stream_options?: Nullable<{ include_usage?: boolean }>;
}

export interface ChatMessage {
  role: 'system' | 'developer' | 'user' | 'assistant';
  content: string | ({ type: 'text'; text: string } | { type: 'image_url'; image_url: { url: string; detail?: string } })[];
  name?: string;
}

export interface ChatBody extends SamplingBody {
  messages: ChatMessage[];
  max_completion_tokens?: Nullable<number>;
  logprobs?: Nullable<boolean>;
  top_logprobs?: Nullable<number>;
}

export interface CompletionBody extends SamplingBody {
  prompt: string | string[] | number[] | number[][];
  logprobs?: Nullable<number>;
  echo?: Nullable<boolean>;
}

export interface LoadAdapterBody {
  name?: string;
  path?: string;
  lora_name?: string;
  lora_path?: string;
}

// ---- fine-tuning jobs (OpenAI's POST /v1/fine_tuning/jobs; our extras in hyperparameters)

const autoOr = (s: Schema): Schema => ({ anyOf: [{ const: 'auto' }, s] });
const hyperparameters = strict([], {
  n_epochs: autoOr({ type: 'integer', minimum: 1, maximum: 1000 }),
  batch_size: autoOr({ type: 'integer', minimum: 1, maximum: 1024 }),
  learning_rate_multiplier: autoOr({ type: 'number', exclusiveMinimum: 0, maximum: 1000 }),
  prompt_length: { type: 'integer', minimum: 1, maximum: 1_048_576 },
  adapter_layers: { type: 'integer', minimum: 1, maximum: 1024 },
  gate: { enum: Object.keys(GATE_RULES) },
  prompt_style: { enum: Object.keys(PROMPT_STYLES) },
  validation_size: { type: 'integer', minimum: 0, maximum: 1_000_000 },
});
const fileId = { type: 'string', minLength: 1, maxLength: 128 };

export const jobCreateBodySchema = strict(['model', 'training_file'], {
  model: { type: 'string', minLength: 1, maxLength: 256 },
  training_file: fileId,
  validation_file: nullable(fileId),
  hyperparameters,
  method: strict(['type'], { type: { const: 'supervised' }, supervised: strict([], { hyperparameters }) }),
  suffix: nullable({ type: 'string', minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9._-]+$' }),
  seed: nullable({ type: 'integer', minimum: 0, maximum: 2147483647 }),
  metadata: nullable({ type: 'object', maxProperties: 16, additionalProperties: { type: 'string', maxLength: 512 } }),
  integrations: nullable({ type: 'array', maxItems: 0 }),
});

export interface JobHyperparametersBody {
  n_epochs?: number | 'auto';
  batch_size?: number | 'auto';
  learning_rate_multiplier?: number | 'auto';
  prompt_length?: number;
  adapter_layers?: number;
  gate?: GateMode;
  prompt_style?: PromptStyleName;
  validation_size?: number;
}

export interface JobCreateBody {
  model: string;
  training_file: string;
  validation_file?: string | null;
  hyperparameters?: JobHyperparametersBody;
  method?: { type: 'supervised'; supervised?: { hyperparameters?: JobHyperparametersBody } };
  suffix?: string | null;
  seed?: number | null;
  metadata?: Record<string, string> | null;
  integrations?: [] | null;
}
