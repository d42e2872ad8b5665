// The OpenAI-compatible HTTP server (fastify 5): /v1/chat/completions, /v1/completions (both
// streaming over SSE and not), /v1/models, adapter loading, unloading and description, files and
// fine-tuning jobs (finetune-api.ts), /health, /metrics, and the web UI at /. Every body is checked
// against its JSON Schema (no type coercion); every error is OpenAI's {"error": {...}} object with
// the status the official clients expect. Generation runs on the continuous-batching scheduler,
// one engine for all adapters; fine-tuning jobs run in a child process beside it.

import { createHash, randomBytes, randomInt, timingSafeEqual } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { EngineRequest, GenerationPiece, GenerationResult, TokenLogprob } from '../generate/engine.js';
import { LlamaAdapterError } from '../core/errors.js';
import type { LoadModelOptions } from '../model/load.js';
import type { LlamaModel } from '../model/model.js';
import type { PromptSource } from '../model/method.js';
import type { LoadAdapterOptions } from '../methods/v1/interop/registry.js';
import type { MultimodalAdapter } from '../methods/v1/multimodal.js';
import type { ImageEncoder } from '../vision/image-encoder.js';
import { imageBytes } from './images.js';
import { AdapterRegistry, type ServedAdapter } from './adapters.js';
import { ChatTemplates } from './chat-prompt.js';
import { ApiError, badParam } from './errors.js';
import { FileStore } from './files.js';
import { fineTuningRoutes } from './finetune-api.js';
import { Jobs } from './jobs.js';
import { registerUi } from './ui.js';
import { pageRoutes } from './page-routes.js';
import { ServeMetrics } from './metrics.js';
import { QueueFullError, Scheduler, Sequence } from './scheduler.js';
import {
  type ChatBody,
  type CompletionBody,
  type LoadAdapterBody,
  type SamplingBody,
  chatBodySchema,
  completionBodySchema,
  loadAdapterBodySchema,
  unloadAdapterBodySchema,
} from './schemas.js';

export interface ServeOptions {
  modelPath: string; // the model's path (its directory holds tokenizer_config.json's chat template)
  modelName?: string; // the base model's id in the API (default: the path's base name)
  adapters?: readonly { name: string; file: string }[]; // loaded at start
  /** Multimodal adapters, loaded with their encoders by the caller (cli/serve.ts), served under their names. */
  multimodal?: readonly { name: string; file: string; adapter: MultimodalAdapter; encoder: ImageEncoder }[];
  imageDir?: string; // image_url parts may name files under this directory (else only data: URLs)
  adapterDir?: string; // adapters may be loaded from files under it while serving
  adapterLoad?: LoadAdapterOptions; // how third-party adapter files are read (official gates and K, litgpt's K/V split), for every adapter
  apiKey?: string; // when set, /v1/* needs "Authorization: Bearer <key>"
  maxBatch?: number; // sequences decoded together (engine slots; default 16)
  maxQueue?: number; // sequences waiting for a slot before 429 (default 256)
  maxTokens?: number; // largest max_tokens a request may ask for (default: the context length)
  prefillChunk?: number; // prompt tokens prefilled per engine step (default 256)
  bodyLimit?: number; // bytes (default 1 MiB)
  contextLength?: number; // positions per slot (default: the model's context)
  dataDir?: string; // uploaded files and fine-tuning jobs live here (none: no uploads, no fine-tuning)
  modelLoad?: LoadModelOptions; // how a fine-tuning job's process loads the model (default: this model's backend and dtype)
  maxUploadBytes?: number; // largest uploaded file (default 64 MiB)
  ui?: boolean; // serve the web UI at / (default true, when it is built)
}

interface Choice {
  text: string;
  ids: number[];
  logprobs: { id: number; logprob: number; top: TokenLogprob[] }[];
  finish: string | null;
}

const now = (): number => Math.floor(Date.now() / 1000);
const hash = (s: string): Buffer => createHash('sha256').update(s).digest();

/** JSON-Schema error -> OpenAI's param path ("messages[0].role"). */
function paramOf(v: { instancePath?: string; params?: Record<string, unknown> }): string {
  const parts = (v.instancePath ?? '').split('/').filter(Boolean);
  const extra = v.params?.missingProperty ?? v.params?.additionalProperty;
  if (typeof extra === 'string') parts.push(extra);
  return parts.reduce((acc, p) => (/^\d+$/.test(p) ? `${acc}[${p}]` : acc ? `${acc}.${p}` : p), '');
}

export class Server {
  readonly app: FastifyInstance;
  readonly metrics = new ServeMetrics();
  readonly scheduler: Scheduler;
  readonly adapters: AdapterRegistry;
  private readonly imageDir: string | null; // image_url files must resolve inside it
  readonly jobs: Jobs | null;
  readonly baseName: string;
  readonly maxTokens: number;
  private readonly templates: ChatTemplates;
  private readonly created = now();
  private readonly apiKey: Buffer | null;
  private readonly inFlight = new Set<() => void>(); // cut() of every open request (shutdown)
  private readonly fingerprint: string;

  constructor(
    readonly model: LlamaModel,
    readonly o: ServeOptions,
  ) {
    const c = model.config;
    const ctx = o.contextLength ?? c.maxSeqLen;
    this.baseName = o.modelName ?? path.basename(o.modelPath).replace(/\.(bin|gguf|safetensors)$/, '');
    this.maxTokens = o.maxTokens ?? ctx;
    this.apiKey = o.apiKey ? hash(o.apiKey) : null;
    this.fingerprint = `fp_${model.fingerprint.slice(0, 12)}`;
    this.templates = new ChatTemplates(o.modelPath, model.tokenizer);
    this.scheduler = new Scheduler(
      model,
      { maxBatch: o.maxBatch ?? 16, maxQueue: o.maxQueue ?? 256, prefillChunk: o.prefillChunk ?? 256, contextLength: ctx },
      this.metrics,
    );
    this.adapters = new AdapterRegistry(model, o.adapterDir ? fs.realpathSync(o.adapterDir) : null, o.adapterLoad);
    for (const a of o.adapters ?? []) this.adapters.add(a.name, a.file);
    for (const a of o.multimodal ?? []) this.adapters.addMultimodal(a.name, a.file, a.adapter, a.encoder);
    this.imageDir = o.imageDir ? fs.realpathSync(o.imageDir) : null;
    const files = o.dataDir ? new FileStore(path.join(o.dataDir, 'files')) : null;
    this.jobs =
      files && o.dataDir
        ? new Jobs({
            dir: path.join(o.dataDir, 'jobs'),
            files,
            modelPath: o.modelPath,
            load: o.modelLoad ?? { backend: model.backend.name, dtype: model.info.dtype },
            baseName: this.baseName,
            fingerprint: model.fingerprint,
            config: c,
            serve: (job, file) => {
              if (job.fine_tuned_model) this.adapters.add(job.fine_tuned_model, file);
            },
          })
        : null;
    this.app = Fastify({
      bodyLimit: o.bodyLimit ?? 1 << 20,
      ajv: { customOptions: { coerceTypes: false, removeAdditional: false, useDefaults: false, allErrors: false } },
      forceCloseConnections: true,
      return503OnClosing: true,
    });
    this.routes();
    fineTuningRoutes(this.app, files && this.jobs ? { files, jobs: this.jobs } : null, o.maxUploadBytes ?? 64 << 20);
    pageRoutes(this.app, { modelPath: o.modelPath, baseName: this.baseName, adapters: this.adapters, maxUploadBytes: o.maxUploadBytes ?? 64 << 20 });
    if (o.ui !== false) registerUi(this.app);
  }

  /** Listen; resolves to the base URL. */
  async listen(host = '127.0.0.1', port = 8080): Promise<string> {
    await this.app.listen({ host, port });
    this.jobs?.start();
    const addr = this.app.server.address();
    const p = addr && typeof addr === 'object' ? addr.port : port;
    return `http://${host.includes(':') ? `[${host}]` : host}:${p}`;
  }

  /** Graceful stop: refuse new requests, let running ones finish for up to `deadlineMs`, then cut them. */
  async close(deadlineMs = 10_000): Promise<void> {
    const jobsStopped = this.jobs?.close(deadlineMs);
    const drained = this.scheduler.drain();
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((r) => {
      timer = setTimeout(() => r('late'), deadlineMs);
    });
    if ((await Promise.race([drained, late])) === 'late') {
      this.scheduler.cancelAll();
      for (const cut of [...this.inFlight]) cut();
    }
    clearTimeout(timer);
    await jobsStopped;
    await this.app.close();
  }

  // ------------------------------------------------------------------ routes

  private routes(): void {
    const app = this.app;
    app.addHook('onRequest', async (req, reply) => {
      reply.raw.on('finish', () => this.metrics.requests.inc({ route: req.routeOptions.url ?? 'unmatched', status: String(reply.raw.statusCode) }));
      if (this.apiKey && req.url.startsWith('/v1/')) {
        const h = req.headers.authorization ?? '';
        const m = /^Bearer (.+)$/.exec(h);
        if (!m || !timingSafeEqual(hash(m[1]), this.apiKey))
          throw new ApiError(
            401,
            m ? 'Incorrect API key provided' : 'Missing API key: send "Authorization: Bearer <key>"',
            'authentication_error',
            null,
            'invalid_api_key',
          );
      }
    });
    app.setErrorHandler((err, req, reply) => {
      let e: ApiError;
      const fe = err as { validation?: { instancePath?: string; params?: Record<string, unknown>; message?: string }[]; statusCode?: number; code?: string };
      if (err instanceof ApiError) e = err;
      else if (fe.validation?.length) {
        const v = fe.validation[0];
        const param = paramOf(v);
        const msg = v.params?.additionalProperty
          ? `Unrecognized request argument supplied: ${param}`
          : `Invalid value for '${param || 'body'}': ${v.message ?? 'invalid'}`;
        e = badParam(param || 'body', msg, 'invalid_value');
      } else if (fe.statusCode === 413)
        e = new ApiError(413, `Request body is larger than ${this.app.initialConfig.bodyLimit} bytes`, 'invalid_request_error', null, 'body_too_large');
      else if (fe.statusCode && fe.statusCode >= 400 && fe.statusCode < 500)
        e = new ApiError(fe.statusCode, (err as Error).message, 'invalid_request_error', null, fe.code ?? null);
      else {
        req.log.error(err);
        e = new ApiError(500, 'The server had an error while processing your request', 'server_error');
      }
      reply.code(e.status).type('application/json').send(e.body());
    });
    app.setNotFoundHandler((req, reply) => {
      const e = new ApiError(404, `Unknown route ${req.method} ${req.url.split('?')[0]}`, 'not_found_error', null, 'unknown_route');
      reply.code(404).send(e.body());
    });

    app.get('/health', async () => ({
      status: this.scheduler.isAccepting ? 'ok' : 'shutting_down',
      active: this.scheduler.active,
      queued: this.scheduler.queued,
    }));
    app.get('/metrics', async (_req, reply) => {
      reply.type(this.metrics.registry.contentType);
      return this.metrics.registry.metrics();
    });
    app.get('/v1/models', async () => ({ object: 'list', data: this.modelList() }));
    app.get<{ Params: { id: string } }>('/v1/models/:id', async (req) => {
      const m = this.modelList().find((x) => x.id === req.params.id);
      if (!m) throw new ApiError(404, `The model '${req.params.id}' does not exist`, 'not_found_error', 'model', 'model_not_found');
      return m;
    });
    app.get('/v1/adapters', async () => ({
      object: 'list',
      data: this.adapters.list().map((a) => this.adapters.describe(a)),
      available: this.adapters.available(),
      adapter_dir: this.adapters.dir !== null,
    }));
    app.get<{ Params: { name: string } }>('/v1/adapters/:name', async (req) => {
      const a = this.adapters.get(req.params.name);
      if (!a) throw new ApiError(404, `No adapter named '${req.params.name}' is loaded`, 'not_found_error', 'model', 'model_not_found');
      return this.adapters.describe(a, true);
    });
    app.post<{ Body: LoadAdapterBody }>('/v1/adapters', { schema: { body: loadAdapterBodySchema } }, async (req) => this.loadAdapter(req.body));
    app.post<{ Body: LoadAdapterBody }>('/v1/load_lora_adapter', { schema: { body: loadAdapterBodySchema } }, async (req) => this.loadAdapter(req.body));
    app.delete<{ Params: { name: string } }>('/v1/adapters/:name', async (req) => this.unloadAdapter(req.params.name));
    app.post<{ Body: { lora_name: string } }>('/v1/unload_lora_adapter', { schema: { body: unloadAdapterBodySchema } }, async (req) =>
      this.unloadAdapter(req.body.lora_name),
    );
    app.post<{ Body: ChatBody }>('/v1/chat/completions', { schema: { body: chatBodySchema } }, (req, reply) => this.chat(req, reply));
    app.post<{ Body: CompletionBody }>('/v1/completions', { schema: { body: completionBodySchema } }, (req, reply) => this.completion(req, reply));
  }

  private modelList(): { id: string; object: 'model'; created: number; owned_by: string; root: string; parent: string | null }[] {
    return [
      { id: this.baseName, object: 'model', created: this.created, owned_by: 'llama-adapter', root: this.baseName, parent: null },
      ...this.adapters
        .list()
        .map((a) => ({ id: a.name, object: 'model' as const, created: a.created, owned_by: 'llama-adapter', root: this.baseName, parent: this.baseName })),
    ];
  }

  private loadAdapter(b: LoadAdapterBody): { id: string; object: 'model'; loaded: true } {
    const name = b.name ?? b.lora_name;
    const file = b.path ?? b.lora_path;
    if (!name) throw badParam('name', "Missing required parameter: 'name'");
    if (!file) throw badParam('path', "Missing required parameter: 'path'");
    if (name === this.baseName) throw badParam('name', `"${name}" is the base model's name`);
    this.adapters.addFromDir(name, file);
    return { id: name, object: 'model', loaded: true };
  }

  private unloadAdapter(name: string): { id: string; object: 'model'; deleted: true } {
    if (!this.adapters.remove(name)) throw new ApiError(404, `No adapter named '${name}' is loaded`, 'not_found_error', 'model', 'model_not_found');
    return { id: name, object: 'model', deleted: true };
  }

  // ------------------------------------------------------------------ generation

  private resolveModel(name: string): { source: PromptSource | null; served: ServedAdapter | null } {
    if (name === this.baseName) return { source: null, served: null };
    const a = this.adapters.get(name);
    if (!a) throw new ApiError(404, `The model '${name}' does not exist`, 'not_found_error', 'model', 'model_not_found');
    return { source: a.adapter, served: a };
  }

  /** The engine requests of one body: one per (prompt, choice), in OpenAI's choice order. */
  private sequences(
    body: SamplingBody,
    prompts: number[][],
    promptParam: string,
    maxTokensIn: number | null | undefined,
    logprobs: number,
    imageSource: PromptSource | null = null,
  ) {
    const ctx = this.scheduler.engine.contextLength;
    const n = body.n ?? 1;
    if (n * prompts.length > this.scheduler.o.maxBatch)
      throw badParam('n', `n (${n}) times the number of prompts (${prompts.length}) is more than the server's batch of ${this.scheduler.o.maxBatch}`);
    if (maxTokensIn != null && maxTokensIn > this.maxTokens)
      throw badParam('max_tokens', `max_tokens is ${maxTokensIn}, more than this server's limit of ${this.maxTokens}`);
    const source = imageSource ?? this.resolveModel(body.model).source;
    const seed = body.seed ?? randomInt(0, 2 ** 31);
    const stop = body.stop == null ? [] : typeof body.stop === 'string' ? (body.stop ? [body.stop] : []) : body.stop;
    const reqs: EngineRequest[] = [];
    for (const p of prompts) {
      if (p.length >= ctx)
        throw badParam(
          promptParam,
          `This model's maximum context length is ${ctx} tokens, and the prompt has ${p.length} tokens (at least one must be left to generate)`,
          'context_length_exceeded',
        );
      if (maxTokensIn != null && p.length + maxTokensIn > ctx)
        throw badParam(
          'max_tokens',
          `This model's maximum context length is ${ctx} tokens; the prompt has ${p.length} tokens and max_tokens is ${maxTokensIn}`,
          'context_length_exceeded',
        );
      const maxTokens = maxTokensIn ?? Math.min(this.maxTokens, ctx - p.length);
      for (let i = 0; i < n; i++) {
        const r: EngineRequest = {
          prompt: p,
          source,
          maxTokens,
          temperature: body.temperature ?? 1,
          topP: body.top_p ?? 1,
          presencePenalty: body.presence_penalty ?? 0,
          frequencyPenalty: body.frequency_penalty ?? 0,
          seed: (seed + i) | 0,
          stop,
          stopTokens: body.ignore_eos ? [] : undefined,
          logprobs: logprobs >= 0 ? logprobs : undefined,
        };
        try {
          this.scheduler.engine.validate(r); // what admit() would refuse, refused now as a 400
        } catch (e) {
          if (e instanceof LlamaAdapterError) throw badParam(promptParam, `${promptParam}: ${e.message}`);
          throw e;
        }
        reqs.push(r);
      }
    }
    return reqs;
  }

  private encode(text: string): number[] {
    return this.model.tokenizer.encode(text, { bos: true });
  }

  private async chat(req: FastifyRequest<{ Body: ChatBody }>, reply: FastifyReply): Promise<void> {
    const b = req.body;
    const { served } = this.resolveModel(b.model);
    const image = await this.imageSource(b, served);
    const rule = this.templates.rule(served?.promptStyle);
    const prompt = this.encode(this.templates.render(rule, b.messages));
    const lp = b.logprobs ? (b.top_logprobs ?? 0) : -1;
    if (b.top_logprobs != null && !b.logprobs) throw badParam('top_logprobs', 'top_logprobs needs logprobs: true');
    const maxTokens = b.max_completion_tokens ?? b.max_tokens;
    const reqs = this.sequences(b, [prompt], 'messages', maxTokens, lp, image);
    return this.run(reply, 'chat', b, [prompt.length], reqs);
  }

  /**
   * The prompt source of a chat request with an image_url part (null without one): the multimodal
   * adapter with that image's features (computed once per distinct image). One image per request.
   */
  private async imageSource(b: ChatBody, served: ServedAdapter | null): Promise<PromptSource | null> {
    const urls: string[] = [];
    for (const m of b.messages) if (typeof m.content !== 'string') for (const p of m.content) if (p.type === 'image_url') urls.push(p.image_url.url);
    if (urls.length === 0) return null;
    const mm = served?.multimodal;
    if (!mm)
      throw badParam(
        'messages',
        `the model '${b.model}' does not take images (serve a multimodal adapter, trained with an image encoder)`,
        'image_not_supported',
      );
    if (urls.length > 1) throw badParam('messages', `${urls.length} images in one request; a LLaMA-Adapter v1 multimodal adapter takes one`, 'too_many_images');
    const { bytes, name } = imageBytes(urls[0], this.imageDir);
    try {
      return mm.adapter.forImage(await mm.features.ofBytes(bytes, name));
    } catch (e) {
      if (e instanceof LlamaAdapterError) throw badParam('messages', e.message, 'invalid_image');
      throw e;
    }
  }

  private completion(req: FastifyRequest<{ Body: CompletionBody }>, reply: FastifyReply): Promise<void> {
    const b = req.body;
    if (b.echo) throw badParam('echo', 'echo is not supported');
    const prompts = this.completionPrompts(b.prompt);
    const reqs = this.sequences(b, prompts, 'prompt', b.max_tokens, b.logprobs ?? -1);
    return this.run(
      reply,
      'completion',
      b,
      prompts.map((x) => x.length),
      reqs,
    );
  }

  /** `prompt` as token rows: a string, strings (each BOS + encoding), one list of ids, or lists of ids (as given). */
  private completionPrompts(p: CompletionBody['prompt']): number[][] {
    if (typeof p === 'string') return [this.encode(p)];
    if (p.every((x) => typeof x === 'string')) return p.map((x) => this.encode(x));
    if (p.every((x) => typeof x === 'number')) return [p];
    return p as number[][];
  }

  private tokenText(id: number): string {
    return this.model.tokenizer.piece(id).replace(/\u2581/g, ' ');
  }

  /** Run the sequences of one request and answer it (SSE when streaming). */
  private async run(reply: FastifyReply, kind: 'chat' | 'completion', body: SamplingBody, promptLens: number[], reqs: EngineRequest[]): Promise<void> {
    const id = `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${randomBytes(12).toString('hex')}`;
    const created = now();
    const stream = body.stream === true;
    const usageChunk = stream && body.stream_options?.include_usage === true;
    const choices: Choice[] = reqs.map(() => ({ text: '', ids: [], logprobs: [], finish: null }));
    const base = {
      id,
      object: kind === 'chat' ? 'chat.completion.chunk' : 'text_completion',
      created,
      model: body.model,
      system_fingerprint: this.fingerprint,
    };
    const raw = reply.raw;
    let finished = false;
    let left = reqs.length;
    const arrived = performance.now();
    let resolveDone: () => void = () => {};
    const done = new Promise<void>((r) => {
      resolveDone = r;
    });
    const write = (obj: unknown): void => {
      if (!raw.destroyed && !raw.writableEnded) raw.write(`data: ${JSON.stringify(obj)}\n\n`);
    };
    // a streamed chunk: the request's fixed fields are serialised once, per token only the choice
    const head = `data: ${JSON.stringify(base).slice(0, -1)},"choices":`;
    const chunk = (choice: unknown): void => {
      if (!raw.destroyed && !raw.writableEnded) raw.write(`${head}[${JSON.stringify(choice)}]}\n\n`);
    };

    const seqs: Sequence[] = reqs.map(
      (r, i) =>
        new Sequence(
          r,
          body.model,
          {
            piece: (p: GenerationPiece) => {
              if (p.logprob) choices[i].logprobs.push(p.logprob);
              if (stream && (p.text || p.logprob)) {
                const lp = p.logprob ? this.logprobsJson(kind, [p.logprob]) : null;
                if (kind === 'chat') chunk({ index: i, delta: { content: p.text }, logprobs: lp, finish_reason: null });
                else chunk({ index: i, text: p.text, logprobs: lp, finish_reason: null });
              }
            },
            done: (r: GenerationResult) => {
              const c = choices[i];
              c.ids = r.ids;
              c.text = r.text;
              c.finish = r.finishReason;
              if (stream) {
                if (kind === 'chat') chunk({ index: i, delta: {}, logprobs: null, finish_reason: c.finish });
                else chunk({ index: i, text: '', logprobs: null, finish_reason: c.finish });
              }
              if (--left === 0) finish();
            },
            fail: (e: unknown) => {
              cancelAll();
              fail(e instanceof Error ? e.message : String(e));
            },
          },
          arrived,
        ),
    );
    const usage = () => {
      const completion = choices.reduce((a, c) => a + c.ids.length, 0);
      const prompt = promptLens.reduce((a, x) => a + x, 0);
      return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
    };
    const cancelAll = (): void => {
      for (const s of seqs) this.scheduler.cancel(s);
    };
    const cleanup = (): void => {
      finished = true;
      this.inFlight.delete(cut);
      resolveDone();
    };
    const finish = (): void => {
      if (finished) return;
      if (stream) {
        if (usageChunk) write({ ...base, choices: [], usage: usage() });
        if (!raw.writableEnded) raw.end('data: [DONE]\n\n');
      } else {
        const obj = {
          ...base,
          object: kind === 'chat' ? 'chat.completion' : 'text_completion', // a chat stream's chunks say chat.completion.chunk
          choices: choices.map((c, i) => ({
            index: i,
            ...(kind === 'chat' ? { message: { role: 'assistant', content: c.text, refusal: null } } : { text: c.text }),
            logprobs: reqs[i].logprobs !== undefined ? this.logprobsJson(kind, c.logprobs) : null,
            finish_reason: c.finish,
          })),
          usage: usage(),
        };
        reply.code(200).type('application/json').send(obj);
      }
      cleanup();
    };
    const fail = (message: string, status = 500): void => {
      if (finished) return;
      const e = new ApiError(status, message, status === 503 ? 'server_error' : 'invalid_request_error');
      if (stream) {
        write(e.body());
        if (!raw.writableEnded) raw.end('data: [DONE]\n\n');
      } else reply.code(status).type('application/json').send(e.body());
      cleanup();
    };
    const cut = (): void => {
      cancelAll();
      fail('The server is shutting down', 503);
    };

    try {
      this.scheduler.submit(seqs);
    } catch (e) {
      if (e instanceof QueueFullError)
        throw new ApiError(
          this.scheduler.isAccepting ? 429 : 503,
          e.message,
          this.scheduler.isAccepting ? 'rate_limit_error' : 'server_error',
          null,
          'queue_full',
        );
      throw e;
    }
    this.inFlight.add(cut);
    raw.on('close', () => {
      if (!finished) {
        cancelAll(); // the client went away: free its slots now
        cleanup();
      }
    });
    if (stream) {
      reply.hijack();
      raw.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-request-id': id });
      if (kind === 'chat')
        for (let i = 0; i < reqs.length; i++) chunk({ index: i, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null });
    }
    await done;
  }

  private logprobsJson(kind: 'chat' | 'completion', lps: { id: number; logprob: number; top: TokenLogprob[] }[]) {
    const tok = (t: TokenLogprob) => {
      const token = this.tokenText(t.id);
      return { token, logprob: t.logprob, bytes: [...Buffer.from(token, 'utf8')] };
    };
    if (kind === 'chat') return { content: lps.map((l) => ({ ...tok(l), top_logprobs: l.top.map(tok) })), refusal: null };
    let offset = 0;
    const text_offset: number[] = [];
    const tokens = lps.map((l) => {
      const t = this.tokenText(l.id);
      text_offset.push(offset);
      offset += t.length;
      return t;
    });
    return {
      tokens,
      token_logprobs: lps.map((l) => l.logprob),
      top_logprobs: lps.map((l) => Object.fromEntries(l.top.map((t) => [this.tokenText(t.id), t.logprob]))),
      text_offset,
    };
  }
}

/** Build a server over a loaded model (adapters from `o.adapters` are loaded now). */
export function createServer(model: LlamaModel, o: ServeOptions): Server {
  return new Server(model, o);
}
