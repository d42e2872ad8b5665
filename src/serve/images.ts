// The bytes of a chat request's image_url: a data: URL (base64 JPEG or PNG), or a file path (or
// file:// URL) that must resolve inside the server's --image-dir (symlinks followed first); anything
// else is a 400 naming `messages`. Decoding and its limits are vision/image.ts's.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { badParam } from './errors.js';

const DATA_URL = /^data:(image\/(?:png|jpeg|jpg));base64,([A-Za-z0-9+/=\s]*)$/;

export function imageBytes(url: string, imageDir: string | null): { bytes: Uint8Array; name: string } {
  if (url.startsWith('data:')) {
    const m = DATA_URL.exec(url);
    if (!m) throw badParam('messages', 'image_url: a data URL must be data:image/png;base64,... or data:image/jpeg;base64,...', 'invalid_image');
    return { bytes: Buffer.from(m[2], 'base64'), name: `image_url (${m[1]} data URL)` };
  }
  if (/^https?:/.test(url)) throw badParam('messages', 'image_url: this server does not fetch http(s) URLs; send a data: URL', 'invalid_image');
  if (!imageDir) throw badParam('messages', 'image_url: only data: URLs are accepted (start the server with --image-dir to allow files)', 'invalid_image');
  const p = url.startsWith('file:') ? fileURLToPath(url) : path.resolve(imageDir, url);
  let real: string;
  try {
    real = fs.realpathSync(p);
  } catch {
    throw badParam('messages', `image_url: no image "${url}" in the image directory`, 'image_not_found');
  }
  const rel = path.relative(imageDir, real);
  if (rel.startsWith('..') || path.isAbsolute(rel)) throw badParam('messages', `image_url: "${url}" is outside the image directory`, 'path_outside_image_dir');
  return { bytes: fs.readFileSync(real), name: url };
}
