// What a page running the model itself (the UI's "In the browser" page, the library's browser
// build) needs from the server: the base model's files, and a place to put the adapter it trained.
//
//   GET /v1/model/files          {name, files}: the files a page needs of the served model (a
//                                 Hugging Face directory: config, safetensors, tokenizer)
//   GET /v1/model/files/NAME     one of them, as bytes
//   PUT /v1/adapters/NAME/file   an adapter file's bytes (application/octet-stream): written into
//                                 --adapter-dir as NAME.safetensors and loaded (checked against
//                                 the base like any adapter file); nothing is kept when it fails

import * as fs from 'node:fs';
import * as path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { writeFileAtomic } from '../core/fs.js';
import { badParam, ApiError } from './errors.js';
import type { AdapterRegistry } from './adapters.js';

/** Files of an HF model directory a page may fetch (weights, config, tokenizer); nothing else is served. */
const PAGE_FILES =
  /^(config\.json|generation_config\.json|model(-\d{5}-of-\d{5})?\.safetensors|model\.safetensors\.index\.json|tokenizer\.json|tokenizer_config\.json|special_tokens_map\.json|tokenizer\.model)$/;

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export interface PageRoutesOptions {
  modelPath: string; // the served model (a directory for the page to load it)
  baseName: string; // its model id
  adapters: AdapterRegistry;
  maxUploadBytes: number;
}

export function pageRoutes(app: FastifyInstance, o: PageRoutesOptions): void {
  const dir = fs.existsSync(o.modelPath) && fs.statSync(o.modelPath).isDirectory() ? o.modelPath : null;
  const files = (): string[] => (dir ? fs.readdirSync(dir).filter((f) => PAGE_FILES.test(f) && fs.statSync(path.join(dir, f)).isFile()) : []);
  const needDir = (): string => {
    if (!dir || !files().includes('config.json'))
      throw new ApiError(404, 'the served model is not a Hugging Face directory, so a page cannot load it', 'not_found_error', null, 'model_files_unavailable');
    return dir;
  };

  app.get('/v1/model/files', async () => {
    needDir();
    return { name: o.baseName, files: files() };
  });

  app.get<{ Params: { name: string } }>('/v1/model/files/:name', async (req, reply) => {
    const d = needDir();
    const name = req.params.name;
    if (!files().includes(name)) throw new ApiError(404, `the model has no file "${name}" a page may load`, 'not_found_error', 'name', 'model_file_not_found');
    reply.type('application/octet-stream');
    return reply.send(fs.createReadStream(path.join(d, name)));
  });

  app.addContentTypeParser('application/octet-stream', { parseAs: 'buffer', bodyLimit: o.maxUploadBytes }, (_req, body, done) => done(null, body));
  app.put<{ Params: { name: string }; Body: Buffer }>('/v1/adapters/:name/file', { bodyLimit: o.maxUploadBytes }, async (req) => {
    const { name } = req.params;
    if (!o.adapters.dir) throw new ApiError(400, 'uploading adapters needs --adapter-dir', 'invalid_request_error', 'name', 'no_adapter_dir');
    if (!NAME.test(name)) throw badParam('name', `adapter name "${name}" must be 1-64 letters, digits, '.', '_' or '-' (not starting with a symbol)`);
    if (name === o.baseName) throw badParam('name', `"${name}" is the base model's name`);
    if (o.adapters.get(name)) throw new ApiError(400, `adapter "${name}" is already loaded`, 'invalid_request_error', 'name', 'adapter_exists');
    if (!Buffer.isBuffer(req.body) || req.body.length === 0)
      throw badParam('body', 'send the adapter file as the body (content-type application/octet-stream)');
    const file = `${name}.safetensors`;
    const full = path.join(o.adapters.dir, file);
    if (fs.existsSync(full)) throw new ApiError(409, `the adapter directory already has ${file}`, 'invalid_request_error', 'name', 'adapter_file_exists');
    writeFileAtomic(full, [req.body]);
    try {
      o.adapters.addFromDir(name, file);
    } catch (e) {
      fs.rmSync(full, { force: true });
      throw e;
    }
    return { id: name, object: 'model', loaded: true };
  });
}
