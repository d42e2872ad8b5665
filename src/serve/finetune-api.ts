// OpenAI's files and fine-tuning endpoints over FileStore and Jobs, so existing clients work:
// POST /v1/files (multipart, purpose "fine-tune"), GET/DELETE /v1/files[/{id}],
// POST/GET /v1/fine_tuning/jobs, GET /v1/fine_tuning/jobs/{id}, GET .../events (a cursor page,
// newest first; with ?stream=true an SSE stream: every event so far, oldest first, then live ones,
// then [DONE] when the job stops), POST .../cancel, .../pause, .../resume.

import multipart from '@fastify/multipart';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { ApiError, badParam } from './errors.js';
import type { FileStore } from './files.js';
import type { Jobs } from './jobs.js';
import { type JobCreateBody, jobCreateBodySchema } from './schemas.js';

interface CursorQuery {
  after?: string;
  limit?: string;
  stream?: string;
}

/** `after` and `limit` (1..max, default 20) of a list query. */
function cursor(q: CursorQuery, max = 100): { after: string | undefined; limit: number } {
  const limit = q.limit === undefined ? 20 : Number(q.limit);
  if (!Number.isInteger(limit) || limit < 1 || limit > max) throw badParam('limit', `limit must be an integer from 1 to ${max} (got "${q.limit}")`);
  return { after: q.after, limit };
}

/** Register the routes; `store` is null when the server has no data directory (every route then says so). */
export function fineTuningRoutes(app: FastifyInstance, store: { files: FileStore; jobs: Jobs } | null, maxUploadBytes: number): void {
  const need = (): { files: FileStore; jobs: Jobs } => {
    if (!store)
      throw new ApiError(400, 'uploads and fine-tuning need a server data directory (serve --data-dir)', 'invalid_request_error', null, 'no_data_dir');
    return store;
  };
  app.register(multipart, { limits: { fileSize: maxUploadBytes, files: 1, fields: 8, parts: 9 } });

  app.post('/v1/files', async (req) => {
    const { files } = need();
    if (!req.isMultipart()) throw badParam('file', 'upload the file as multipart/form-data with fields "file" and "purpose"');
    let purpose: unknown;
    let upload: { filename: string; bytes: Buffer } | null = null;
    try {
      for await (const part of req.parts()) {
        if (part.type === 'file' && part.fieldname === 'file') upload = { filename: part.filename || 'upload.jsonl', bytes: await part.toBuffer() };
        else if (part.type === 'file') throw badParam(part.fieldname, `unexpected file field "${part.fieldname}" (the file goes in "file")`);
        else if (part.fieldname === 'purpose') purpose = part.value;
        else throw badParam(part.fieldname, `Unrecognized request argument supplied: ${part.fieldname}`);
      }
    } catch (e) {
      if ((e as { code?: string }).code === 'FST_REQ_FILE_TOO_LARGE')
        throw new ApiError(
          413,
          `the file is larger than this server's upload limit of ${maxUploadBytes} bytes`,
          'invalid_request_error',
          'file',
          'file_too_large',
        );
      throw e;
    }
    if (purpose !== 'fine-tune')
      throw badParam('purpose', `purpose is ${JSON.stringify(purpose ?? null)}; this server takes files for "fine-tune" only`, 'invalid_purpose');
    if (!upload) throw badParam('file', "Missing required parameter: 'file'");
    return files.add(upload.filename, upload.bytes);
  });
  app.get('/v1/files', async () => ({ object: 'list', data: need().files.list(), has_more: false }));
  app.get<{ Params: { id: string } }>('/v1/files/:id', async (req) => {
    const f = need().files.get(req.params.id);
    if (!f) throw new ApiError(404, `No file with id '${req.params.id}'`, 'not_found_error', 'id', 'file_not_found');
    return f;
  });
  app.delete<{ Params: { id: string } }>('/v1/files/:id', async (req) => {
    const { files, jobs } = need();
    const id = req.params.id;
    const user = jobs.unfinishedUserOf(id);
    if (user) throw badParam('id', `file ${id} is used by fine-tuning job ${user.id} (${user.status})`, 'file_in_use');
    if (!files.remove(id)) throw new ApiError(404, `No file with id '${id}'`, 'not_found_error', 'id', 'file_not_found');
    return { id, object: 'file', deleted: true };
  });

  app.post<{ Body: JobCreateBody }>('/v1/fine_tuning/jobs', { schema: { body: jobCreateBodySchema } }, async (req) => need().jobs.create(req.body));
  app.get<{ Querystring: CursorQuery }>('/v1/fine_tuning/jobs', async (req) => {
    const { after, limit } = cursor(req.query);
    return { object: 'list', ...need().jobs.list(after, limit) };
  });
  app.get<{ Params: { id: string } }>('/v1/fine_tuning/jobs/:id', async (req) => need().jobs.get(req.params.id));
  app.post<{ Params: { id: string } }>('/v1/fine_tuning/jobs/:id/cancel', async (req) => need().jobs.cancel(req.params.id));
  app.post<{ Params: { id: string } }>('/v1/fine_tuning/jobs/:id/pause', async (req) => need().jobs.pause(req.params.id));
  app.post<{ Params: { id: string } }>('/v1/fine_tuning/jobs/:id/resume', async (req) => need().jobs.resume(req.params.id));
  app.get<{ Params: { id: string }; Querystring: CursorQuery }>('/v1/fine_tuning/jobs/:id/events', async (req, reply) => {
    const { jobs } = need();
    if (req.query.stream === 'true') return streamEvents(jobs, req.params.id, reply);
    const { after, limit } = cursor(req.query, 10_000);
    return { object: 'list', ...jobs.listEvents(req.params.id, after, limit) };
  });
}

/** SSE: `data: {event}` for every event so far and each new one, `data: [DONE]` once the job stops. */
function streamEvents(jobs: Jobs, id: string, reply: FastifyReply): void {
  jobs.get(id); // 404 before the stream starts
  const raw = reply.raw;
  reply.hijack();
  raw.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
  const unsubscribe = jobs.subscribe(id, (e) => {
    if (raw.destroyed || raw.writableEnded) return;
    if (e) raw.write(`data: ${JSON.stringify(e)}\n\n`);
    else raw.end('data: [DONE]\n\n');
  });
  raw.on('close', unsubscribe);
}
