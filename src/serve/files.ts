// Uploaded files (POST /v1/files, purpose "fine-tune"), as OpenAI's file objects. Each upload is
// parsed as instruction data (Alpaca, Dolly or chat records; JSON array or JSONL) before anything
// is written, so a bad upload is a 400 naming its line and changes nothing. Stored under
// DATA_DIR/files as `<id>.data` (the bytes as uploaded) beside `<id>.json` (the file object).

import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LlamaAdapterError } from '../core/errors.js';
import { mkdirs, writeFileAtomic } from '../core/fs.js';
import { parseInstructionData } from '../train/data.js';
import { badParam } from './errors.js';

export interface FileObject {
  id: string; // "file-<24 hex>"
  object: 'file';
  bytes: number;
  created_at: number; // unix seconds
  filename: string; // as the client named it
  purpose: 'fine-tune';
  status: 'processed';
  status_details: null;
  records: number; // instruction records in the file (our extra)
}

/** A JSON record the server wrote (written atomically, so only a hand-edited or foreign file fails: named). */
export function readJson<T>(file: string, what: string): T {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
  } catch (e) {
    throw new LlamaAdapterError(`${file}: not a readable ${what} record (${(e as Error).message})`);
  }
}

export class FileStore {
  private readonly byId = new Map<string, FileObject>();

  constructor(readonly dir: string) {
    if (!fs.existsSync(dir)) return;
    for (const name of fs.readdirSync(dir).filter((n) => n.endsWith('.json'))) {
      const f = readJson<FileObject>(path.join(dir, name), 'uploaded file');
      if (fs.existsSync(this.path(f.id))) this.byId.set(f.id, f);
    }
  }

  /** Validate and store an upload; a bad one is a 400 (param "file") naming what is wrong and where, and stores nothing. */
  add(filename: string, bytes: Buffer): FileObject {
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    } catch {
      throw badParam('file', `${filename}: the file is not UTF-8 text`, 'invalid_file');
    }
    let records: number;
    try {
      records = parseInstructionData(text, filename).length;
    } catch (e) {
      if (e instanceof LlamaAdapterError) throw badParam('file', e.message, 'invalid_file');
      throw e;
    }
    const f: FileObject = {
      id: `file-${randomBytes(12).toString('hex')}`,
      object: 'file',
      bytes: bytes.length,
      created_at: Math.floor(Date.now() / 1000),
      filename,
      purpose: 'fine-tune',
      status: 'processed',
      status_details: null,
      records,
    };
    mkdirs(this.dir);
    writeFileAtomic(this.path(f.id), bytes);
    writeFileAtomic(path.join(this.dir, `${f.id}.json`), JSON.stringify(f));
    this.byId.set(f.id, f);
    return f;
  }

  get(id: string): FileObject | undefined {
    return this.byId.get(id);
  }

  /** Newest first. */
  list(): FileObject[] {
    return [...this.byId.values()].sort((a, b) => b.created_at - a.created_at);
  }

  /** Where a file's bytes are. */
  path(id: string): string {
    return path.join(this.dir, `${id}.data`);
  }

  remove(id: string): boolean {
    if (!this.byId.delete(id)) return false;
    fs.rmSync(this.path(id), { force: true });
    fs.rmSync(path.join(this.dir, `${id}.json`), { force: true });
    return true;
  }
}
