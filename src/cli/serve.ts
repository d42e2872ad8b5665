// `llama-adapter serve`: the OpenAI-compatible server over one base model and any number of
// adapters (src/serve/server.ts), with fine-tuning jobs and the web UI. Stops gracefully on
// SIGTERM / SIGINT.

import * as os from 'node:os';
import * as path from 'node:path';
import { Command } from 'commander';
import { check } from '../core/errors.js';
import { createServer } from '../serve/server.js';
import {
  adapterLoadOptions,
  adapterOptions,
  imageOptions,
  int,
  modelOptions,
  openModel,
  type AdapterFlags,
  type ImageFlags,
  type ModelFlags,
} from './common.js';
import { isMultimodalAdapterFile, loadMultimodalAdapter } from '../methods/v1/multimodal-file.js';

interface ServeFlags extends ModelFlags, AdapterFlags, ImageFlags {
  imageDir?: string;
  adapter: string[];
  adapterDir?: string;
  host: string;
  port: number;
  apiKey?: string;
  maxBatch: number;
  maxQueue: number;
  maxTokens?: number;
  prefillChunk: number;
  modelName?: string;
  shutdownTimeout: number;
  dataDir?: string;
  ui: boolean;
}

/** Where uploads and fine-tuning jobs live by default: $LLAMA_ADAPTER_DATA_DIR, else $XDG_DATA_HOME/llama-adapter, else ~/.local/share/llama-adapter. */
function defaultDataDir(): string {
  return process.env.LLAMA_ADAPTER_DATA_DIR || path.join(process.env.XDG_DATA_HOME || path.join(os.homedir(), '.local', 'share'), 'llama-adapter');
}

export function serveCommand(): Command {
  const cmd = new Command('serve').description('serve the model and its adapters over an OpenAI-compatible HTTP API');
  imageOptions(adapterOptions(modelOptions(cmd)))
    .option(
      '-a, --adapter <name=path>',
      'serve an adapter (any readable format: file or PEFT directory) under a model name (repeatable)',
      (v: string, acc: string[]) => [...acc, v],
      [] as string[],
    )
    .option('--adapter-dir <dir>', 'allow loading adapters from files in this directory while serving (POST /v1/adapters)')
    .option('--host <host>', 'address to bind (loopback by default)', '127.0.0.1')
    .option('--port <n>', 'port (0 = any free port)', int('--port', 0), 8080)
    .option('--api-key <key>', 'require "Authorization: Bearer <key>" on /v1/* (default: env LLAMA_ADAPTER_API_KEY)')
    .option('--max-batch <n>', 'sequences decoded together (slots)', int('--max-batch', 1), 16)
    .option('--max-queue <n>', 'sequences that may wait for a slot; more get 429', int('--max-queue', 0), 256)
    .option('--max-tokens <n>', 'largest max_tokens a request may ask for (default: the context length)', int('--max-tokens', 1))
    .option('--prefill-chunk <n>', 'prompt tokens prefilled per engine step (keeps running streams flowing)', int('--prefill-chunk', 1), 256)
    .option('--model-name <id>', "the base model's id in the API (default: the model path's base name)")
    .option(
      '--data-dir <dir>',
      'uploaded files and fine-tuning jobs (default: $LLAMA_ADAPTER_DATA_DIR, else $XDG_DATA_HOME/llama-adapter, else ~/.local/share/llama-adapter)',
    )
    .option('--no-ui', 'do not serve the web UI at /')
    .option('--image-dir <dir>', 'image_url parts may name image files under this directory (otherwise only data: URLs)')
    .option('--shutdown-timeout <ms>', 'on SIGTERM/SIGINT, how long running requests may take to finish', int('--shutdown-timeout', 0), 10_000)
    .action(async (f: ServeFlags) => {
      const adapters = f.adapter.map((spec) => {
        const eq = spec.indexOf('=');
        check(eq > 0 && eq < spec.length - 1, `--adapter "${spec}": expected NAME=FILE`);
        return { name: spec.slice(0, eq), file: spec.slice(eq + 1) };
      });
      const model = await openModel(f);
      // multimodal adapters are opened here with their image encoders (asynchronous), the rest by the server
      const multimodal = [];
      for (const a of adapters.filter((x) => isMultimodalAdapterFile(x.file))) {
        const { adapter, encoder } = await loadMultimodalAdapter(a.file, model, { encoderPath: f.imageEncoder, layers: f.featureLayers });
        multimodal.push({ ...a, adapter, encoder });
      }
      const server = createServer(model, {
        modelPath: f.model,
        modelName: f.modelName,
        adapters: adapters.filter((x) => !isMultimodalAdapterFile(x.file)),
        multimodal,
        imageDir: f.imageDir,
        adapterDir: f.adapterDir,
        adapterLoad: adapterLoadOptions(f),
        apiKey: f.apiKey ?? process.env.LLAMA_ADAPTER_API_KEY,
        maxBatch: f.maxBatch,
        maxQueue: f.maxQueue,
        maxTokens: f.maxTokens,
        prefillChunk: f.prefillChunk,
        dataDir: f.dataDir ?? defaultDataDir(),
        modelLoad: { tokenizer: f.tokenizer, backend: f.backend, threads: f.threads, dtype: f.dtype },
        ui: f.ui,
      });
      const url = await server.listen(f.host, f.port);
      const names = [server.baseName, ...server.adapters.list().map((a) => a.name)];
      process.stderr.write(
        `llama-adapter: serving ${names.join(', ')} at ${url}/v1 (backend ${model.backend.name}, batch ${f.maxBatch})${f.ui ? `, web UI at ${url}/` : ''}\n`,
      );
      process.stdout.write(`${url}\n`);
      let stopping = false;
      const stop = (sig: string): void => {
        if (stopping) process.exit(1); // a second signal: leave at once
        stopping = true;
        process.stderr.write(`llama-adapter: ${sig}: finishing running requests (up to ${f.shutdownTimeout} ms)\n`);
        server.close(f.shutdownTimeout).then(
          () => process.exit(0),
          () => process.exit(1),
        );
      };
      process.on('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGINT', () => stop('SIGINT'));
    });
  return cmd;
}
