// The web UI at / : the static files `npm run build` bundles from ui/ into dist/ui (scripts/
// build-ui.mjs), served by @fastify/static with a content security policy that allows nothing
// but this origin (everything is bundled; no CDN). Where the bundle is missing, / says how to build it.

import * as fs from 'node:fs';
import * as path from 'node:path';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance } from 'fastify';
import { packageRoot } from '../core/package-root.js';
import { ApiError } from './errors.js';

const CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/** dist/ui of this package, if the UI has been built. */
function uiDir(): string | null {
  const root = packageRoot();
  const dir = root && path.join(root, 'dist', 'ui');
  return dir && fs.existsSync(path.join(dir, 'index.html')) ? dir : null;
}

export function registerUi(app: FastifyInstance): void {
  const root = uiDir();
  if (!root) {
    app.get('/', async () => {
      throw new ApiError(404, 'The web UI is not built: run `npm run build` in the llama-adapter package', 'not_found_error', null, 'ui_not_built');
    });
    return;
  }
  app.register(fastifyStatic, {
    root,
    prefix: '/',
    wildcard: false, // one route per file: unknown paths stay OpenAI-style 404s
    decorateReply: false,
    setHeaders: (reply) => {
      reply.header('content-security-policy', CSP);
      reply.header('x-content-type-options', 'nosniff');
    },
  });
}
