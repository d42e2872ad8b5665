// Labelled data for the task commands: image classification from a folder per class
// (DIR/<label>/<image>, labels in sorted order as torchvision's ImageFolder) or from JSONL records
// {"image": path, "label": ...} (paths relative to the file, or to --image-dir); text classification
// from JSONL records {"text": ..., "label": ...}. Labels are strings (integers are read as their
// decimal text); a record whose label is not in the label set, an image that does not decode, or a
// malformed line is an error naming the file and the line (or the image).

import * as fs from 'node:fs';
import * as path from 'node:path';
import { check, LlamaAdapterError } from '../../core/errors.js';
import { textLines } from '../../core/text.js';
import { readImage } from '../../vision/image.js';
import { type PreprocessConfig, preprocessImage } from '../../vision/preprocess.js';

export interface Labelled<T> {
  input: T; // an image path or a text
  label: string;
  where: string; // "FILE: line N" or the image's path
}

const IMAGE_EXT = /\.(jpe?g|png)$/i;

/** JSONL records of `path` with their line numbers. */
function jsonl(path: string): { o: Record<string, unknown>; where: string }[] {
  let text: string;
  try {
    text = fs.readFileSync(path, 'utf8');
  } catch (e) {
    throw new LlamaAdapterError(`${path}: cannot read data file (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
  }
  const out: { o: Record<string, unknown>; where: string }[] = [];
  for (const { line, text: t } of textLines(text)) {
    if (!t.trim()) continue;
    const where = `${path}: line ${line}`;
    let o: unknown;
    try {
      o = JSON.parse(t);
    } catch (e) {
      throw new LlamaAdapterError(`${where}: invalid JSON (${(e as Error).message})`);
    }
    check(o !== null && typeof o === 'object' && !Array.isArray(o), `${where}: expected a JSON object`);
    out.push({ o: o as Record<string, unknown>, where });
  }
  check(out.length > 0, `${path}: no records`);
  return out;
}

function labelOf(o: Record<string, unknown>, where: string): string {
  const l = o.label;
  check(typeof l === 'string' || (typeof l === 'number' && Number.isInteger(l)), `${where}: "label" must be a string or an integer`);
  return String(l);
}

/** Text classification records from JSONL ({"text", "label"}). */
export function readTextClassification(path: string): Labelled<string>[] {
  return jsonl(path).map(({ o, where }) => {
    check(typeof o.text === 'string' && o.text.trim() !== '', `${where}: "text" must be a non-empty string`);
    return { input: o.text, label: labelOf(o, where), where };
  });
}

/** Image classification records: a directory with one sub-directory per label, or JSONL ({"image", "label"}). */
export function readImageClassification(p: string, imageDir?: string): Labelled<string>[] {
  if (fs.existsSync(p) && fs.statSync(p).isDirectory()) {
    const classes = fs
      .readdirSync(p, { withFileTypes: true })
      .filter((d) => d.isDirectory())
      .map((d) => d.name)
      .sort();
    check(classes.length > 0, `${p}: no class directories (expected ${p}/<label>/<image>.jpg)`);
    const out: Labelled<string>[] = [];
    for (const c of classes)
      for (const f of fs.readdirSync(path.join(p, c)).sort())
        if (IMAGE_EXT.test(f)) out.push({ input: path.join(p, c, f), label: c, where: path.join(p, c, f) });
    check(out.length > 0, `${p}: no .jpg / .png images in its class directories`);
    return out;
  }
  const base = imageDir ?? path.dirname(p);
  return jsonl(p).map(({ o, where }) => {
    check(typeof o.image === 'string' && o.image !== '', `${where}: "image" must be a path`);
    return { input: path.resolve(base, o.image), label: labelOf(o, where), where };
  });
}

/** The label set of the training records, sorted (or `given`, in its order). */
export function labelSet(records: readonly Labelled<unknown>[], given?: readonly string[]): string[] {
  if (given) {
    check(new Set(given).size === given.length, `the label set repeats a label (${given.join(', ')})`);
    return [...given];
  }
  return [...new Set(records.map((r) => r.label))].sort();
}

/** Class ids of the records in `labels`; a label outside the set is an error naming the record. */
export function labelIds(records: readonly Labelled<unknown>[], labels: readonly string[]): Int32Array {
  const id = new Map(labels.map((l, i) => [l, i]));
  return Int32Array.from(records, (r) => {
    const i = id.get(r.label);
    if (i === undefined)
      throw new LlamaAdapterError(
        `${r.where}: label ${JSON.stringify(r.label)} is not in the label set (${labels.slice(0, 20).join(', ')}${labels.length > 20 ? ', ...' : ''})`,
      );
    return i;
  });
}

/** A record's image, decoded and preprocessed (errors name the record). */
export function recordPixels(r: Labelled<string>, cfg: PreprocessConfig): Float32Array {
  try {
    return preprocessImage(readImage(r.input), cfg);
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    throw new LlamaAdapterError(r.where === r.input ? msg : `${r.where}: ${msg}`, { cause: e });
  }
}
