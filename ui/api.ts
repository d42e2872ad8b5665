// The UI's client of the server's API: JSON calls with the API key (kept in localStorage, sent
// as a Bearer token), OpenAI error objects turned into Errors with their message, SSE streams
// read with eventsource-parser (fetch, not EventSource, so the key can be sent), and the shapes
// of what the server answers.

import { EventSourceParserStream } from 'eventsource-parser/stream';

const KEY = 'llama-adapter.apiKey';

export const apiKey = {
  get: (): string => localStorage.getItem(KEY) ?? '',
  set: (k: string): void => (k ? localStorage.setItem(KEY, k) : localStorage.removeItem(KEY)),
};

export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly param: string | null = null,
  ) {
    super(message);
  }
}

function headers(json: boolean): Record<string, string> {
  const h: Record<string, string> = {};
  const k = apiKey.get();
  if (k) h.authorization = `Bearer ${k}`;
  if (json) h['content-type'] = 'application/json';
  return h;
}

async function check(res: Response): Promise<Response> {
  if (res.ok) return res;
  let message = `${res.status} ${res.statusText}`;
  let param: string | null = null;
  try {
    const b = (await res.json()) as { error?: { message?: string; param?: string | null } };
    if (b.error?.message) message = b.error.message;
    param = b.error?.param ?? null;
  } catch {
    // not JSON: keep the status line
  }
  throw new ApiError(message, res.status, param);
}

/** GET (no body) or POST/DELETE a JSON body (or FormData); the parsed JSON answer. */
export async function api<T>(path: string, init: { method?: string; body?: unknown; signal?: AbortSignal } = {}): Promise<T> {
  const form = init.body instanceof FormData;
  const res = await fetch(path, {
    method: init.method ?? (init.body === undefined ? 'GET' : 'POST'),
    headers: headers(init.body !== undefined && !form),
    body: init.body === undefined ? undefined : form ? (init.body as FormData) : JSON.stringify(init.body),
    signal: init.signal,
  });
  return (await (await check(res)).json()) as T;
}

/** The `data` of each SSE event of a response, parsed as JSON, until `[DONE]`. */
export async function* sse<T>(path: string, init: { body?: unknown; signal?: AbortSignal } = {}): AsyncGenerator<T> {
  const res = await check(
    await fetch(path, {
      method: init.body === undefined ? 'GET' : 'POST',
      headers: headers(init.body !== undefined),
      body: init.body === undefined ? undefined : JSON.stringify(init.body),
      signal: init.signal,
    }),
  );
  if (!res.body) return;
  const reader = res.body.pipeThrough(new TextDecoderStream()).pipeThrough(new EventSourceParserStream()).getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done || value.data === '[DONE]') return;
      const obj = JSON.parse(value.data) as { error?: { message: string } };
      if (obj.error) throw new ApiError(obj.error.message, 500);
      yield obj as Awaited<T>;
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

// ---- what the server answers

export interface Model {
  id: string;
  parent: string | null; // null: the base model
}

export interface Sampling {
  temperature: number;
  top_p: number;
  max_tokens: number;
  seed: number | null;
}

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

interface ChatChunk {
  choices: { delta: { content?: string }; finish_reason: string | null }[];
  usage?: { completion_tokens: number };
}

export interface StreamStats {
  tokens: number; // completion tokens (the usage chunk's count)
  finish: string | null;
  firstMs: number | null; // from sending to the first text
  lastMs: number; // from sending to the end
}

/** Stream a chat completion; `onText` gets each piece. Aborting `signal` stops it (the server frees the slot). */
export async function streamChat(model: string, messages: ChatMessage[], s: Sampling, onText: (t: string) => void, signal: AbortSignal): Promise<StreamStats> {
  const t0 = performance.now();
  const stats: StreamStats = { tokens: 0, finish: null, firstMs: null, lastMs: 0 };
  const body = {
    model,
    messages,
    stream: true,
    stream_options: { include_usage: true },
    temperature: s.temperature,
    top_p: s.top_p,
    max_tokens: s.max_tokens,
    ...(s.seed === null ? {} : { seed: s.seed }),
  };
  for await (const c of sse<ChatChunk>('/v1/chat/completions', { body, signal })) {
    const ch = c.choices[0];
    if (ch?.delta.content) {
      stats.firstMs ??= performance.now() - t0;
      onText(ch.delta.content);
    }
    if (ch?.finish_reason) stats.finish = ch.finish_reason;
    if (c.usage) stats.tokens = c.usage.completion_tokens;
  }
  stats.lastMs = performance.now() - t0;
  return stats;
}

export async function listModels(): Promise<Model[]> {
  return (await api<{ data: Model[] }>('/v1/models')).data;
}

export interface AdapterInfo {
  id: string;
  file: string;
  file_bytes: number | null;
  created: number;
  base_fingerprint: string;
  prompt_length: number;
  adapter_layers: number;
  first_layer: number;
  gate: string;
  parameters: number;
  training_args: Record<string, unknown> | null;
  gates?: { layers: number[]; effective: number[][]; raw: number[][] };
}

export interface JobHyperparameters {
  n_epochs: number;
  batch_size: number;
  learning_rate_multiplier: number;
  prompt_length: number;
  adapter_layers: number;
  gate: string;
  prompt_style: string;
  validation_size: number;
}

export interface Job {
  id: string;
  created_at: number;
  finished_at: number | null;
  status: string;
  model: string;
  fine_tuned_model: string | null;
  training_file: string;
  validation_file: string | null;
  hyperparameters: JobHyperparameters;
  trained_tokens: number | null;
  error: { message: string } | null;
  estimated_finish: number | null;
}

export interface JobEvent {
  id: string;
  created_at: number;
  level: string;
  message: string;
  type: 'message' | 'metrics';
  data: {
    status?: string;
    step?: number;
    total_steps?: number;
    epoch?: number;
    train_loss?: number;
    valid_loss?: number | null;
    learning_rate?: number;
    eta_s?: number;
    tokens_per_s?: number;
  };
}
