// Image files -> RGB pixels. JPEG through jpeg-js and PNG through pngjs (pure JavaScript, no native
// download), told apart by their signatures, never by the file name. Sizes are read from the
// header and checked before any pixel is decoded (a decompression bomb is refused, not
// allocated), JPEG EXIF orientation is applied (as HF's load_image does with
// ImageOps.exif_transpose), and every result is 8-bit RGB: alpha is dropped and grey is replicated,
// as PIL's convert("RGB") does. Every failure is a LlamaAdapterError naming the image.

import * as fs from 'node:fs';
import jpeg from 'jpeg-js';
import { PNG } from 'pngjs';
import { LlamaAdapterError } from '../core/errors.js';

/** An 8-bit RGB image, row-major HWC. */
export interface RgbImage {
  width: number;
  height: number;
  data: Uint8Array; // (height, width, 3)
}

/** Largest image accepted, in pixels (PIL warns above 89 M and refuses above 179 M; we refuse above this). */
export const MAX_IMAGE_PIXELS = 50_000_000;

/** Detected container format, or null. */
function sniff(b: Uint8Array): 'jpeg' | 'png' | 'gif' | 'webp' | 'bmp' | null {
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpeg';
  if (b.length >= 8 && b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47 && b[4] === 0x0d && b[5] === 0x0a) return 'png';
  if (b.length >= 6 && b[0] === 0x47 && b[1] === 0x49 && b[2] === 0x46) return 'gif';
  if (b.length >= 12 && b[0] === 0x52 && b[1] === 0x49 && b[2] === 0x46 && b[3] === 0x46 && b[8] === 0x57 && b[9] === 0x45) return 'webp';
  if (b.length >= 2 && b[0] === 0x42 && b[1] === 0x4d) return 'bmp';
  return null;
}

/** JPEG width/height from the first SOFn marker, and the EXIF orientation (1 when absent). */
function jpegHeader(b: Uint8Array): { width: number; height: number; orientation: number } | null {
  let i = 2,
    orientation = 1;
  while (i + 4 <= b.length) {
    if (b[i] !== 0xff) return null;
    const marker = b[i + 1];
    if (marker === 0xff) {
      i++;
      continue;
    }
    if (marker === 0xd8 || (marker >= 0xd0 && marker <= 0xd7) || marker === 0x01) {
      i += 2;
      continue;
    }
    const len = (b[i + 2] << 8) | b[i + 3];
    if (len < 2 || i + 2 + len > b.length) return null;
    if (marker === 0xe1) orientation = exifOrientation(b.subarray(i + 4, i + 2 + len)) ?? orientation;
    const sof = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
    if (sof && len >= 7) return { height: (b[i + 5] << 8) | b[i + 6], width: (b[i + 7] << 8) | b[i + 8], orientation };
    i += 2 + len;
  }
  return null;
}

/** Orientation (tag 0x0112) from an APP1 payload starting "Exif\0\0", or null. */
function exifOrientation(p: Uint8Array): number | null {
  if (p.length < 14 || String.fromCharCode(...p.subarray(0, 4)) !== 'Exif') return null;
  const t = p.subarray(6);
  const le = t[0] === 0x49;
  const u16 = (o: number): number => (o + 2 <= t.length ? (le ? t[o] | (t[o + 1] << 8) : (t[o] << 8) | t[o + 1]) : -1);
  const u32 = (o: number): number => (o + 4 <= t.length ? (le ? u16(o) + u16(o + 2) * 65536 : u16(o) * 65536 + u16(o + 2)) : -1);
  const ifd = u32(4);
  const n = u16(ifd);
  for (let k = 0; k < n && ifd >= 0; k++) {
    const e = ifd + 2 + k * 12;
    if (u16(e) === 0x0112) {
      const v = u16(e + 8);
      return v >= 1 && v <= 8 ? v : null;
    }
  }
  return null;
}

/** Apply an EXIF orientation (2..8) the way PIL's exif_transpose does. */
function orient(img: RgbImage, o: number): RgbImage {
  if (o <= 1) return img;
  const { width: W, height: H, data } = img;
  const swap = o >= 5;
  const w = swap ? H : W,
    h = swap ? W : H;
  const out = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      // source pixel of output (x, y) per orientation
      let sx = x,
        sy = y;
      if (o === 2) sx = W - 1 - x;
      else if (o === 3) (sx = W - 1 - x), (sy = H - 1 - y);
      else if (o === 4) sy = H - 1 - y;
      else if (o === 5) (sx = y), (sy = x);
      else if (o === 6) (sx = y), (sy = H - 1 - x);
      else if (o === 7) (sx = W - 1 - y), (sy = H - 1 - x);
      else if (o === 8) (sx = W - 1 - y), (sy = x);
      const s = (sy * W + sx) * 3,
        d = (y * w + x) * 3;
      out[d] = data[s];
      out[d + 1] = data[s + 1];
      out[d + 2] = data[s + 2];
    }
  return { width: w, height: h, data: out };
}

/** RGBA (w*h*4) -> RGB, alpha dropped (PIL convert("RGB") does not composite). */
function rgbaToRgb(rgba: Uint8Array, w: number, h: number): Uint8Array {
  const out = new Uint8Array(w * h * 3);
  for (let i = 0, j = 0; i < w * h; i++, j += 4) {
    out[i * 3] = rgba[j];
    out[i * 3 + 1] = rgba[j + 1];
    out[i * 3 + 2] = rgba[j + 2];
  }
  return out;
}

function checkSize(name: string, w: number, h: number, maxPixels: number): void {
  if (!(w >= 1 && h >= 1)) throw new LlamaAdapterError(`${name}: image has no pixels (${w}x${h})`);
  if (w * h > maxPixels) {
    throw new LlamaAdapterError(`${name}: image is ${w}x${h} = ${w * h} pixels, more than the limit of ${maxPixels} (a decompression bomb?)`);
  }
}

/** Decode the bytes of a JPEG or PNG file named `name` (in errors) to RGB. */
export function decodeImage(bytes: Uint8Array, name: string, maxPixels = MAX_IMAGE_PIXELS): RgbImage {
  const kind = sniff(bytes);
  if (kind === 'jpeg') {
    const hdr = jpegHeader(bytes);
    if (!hdr) throw new LlamaAdapterError(`${name}: not a readable JPEG (no frame header; truncated or corrupt)`);
    checkSize(name, hdr.width, hdr.height, maxPixels);
    let d: { width: number; height: number; data: Uint8Array };
    try {
      d = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: true, maxResolutionInMP: maxPixels / 1e6, maxMemoryUsageInMB: 2048 });
    } catch (e) {
      throw new LlamaAdapterError(`${name}: cannot decode JPEG (${e instanceof Error ? e.message : String(e)}; truncated or corrupt?)`, { cause: e });
    }
    checkSize(name, d.width, d.height, maxPixels);
    return orient({ width: d.width, height: d.height, data: rgbaToRgb(d.data, d.width, d.height) }, hdr.orientation);
  }
  if (kind === 'png') {
    if (bytes.length < 24) throw new LlamaAdapterError(`${name}: truncated PNG (${bytes.length} bytes)`);
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    checkSize(name, dv.getUint32(16), dv.getUint32(20), maxPixels);
    let p: PNG;
    try {
      p = PNG.sync.read(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    } catch (e) {
      throw new LlamaAdapterError(`${name}: cannot decode PNG (${e instanceof Error ? e.message : String(e)}; truncated or corrupt?)`, { cause: e });
    }
    return { width: p.width, height: p.height, data: rgbaToRgb(new Uint8Array(p.data.buffer, p.data.byteOffset, p.data.length), p.width, p.height) };
  }
  const what = kind
    ? `a ${kind.toUpperCase()} file`
    : `not an image this library reads (first bytes ${[...bytes.subarray(0, 4)].map((x) => x.toString(16).padStart(2, '0')).join(' ') || 'none'})`;
  throw new LlamaAdapterError(`${name}: ${what}; images must be JPEG or PNG`);
}

/** Read and decode an image file (errors name the path). */
export function readImage(path: string, maxPixels = MAX_IMAGE_PIXELS): RgbImage {
  let bytes: Uint8Array;
  try {
    bytes = fs.readFileSync(path);
  } catch (e) {
    throw new LlamaAdapterError(`${path}: cannot read image (${(e as NodeJS.ErrnoException).code ?? String(e)})`, { cause: e });
  }
  return decodeImage(bytes, path, maxPixels);
}
