// llama.cpp's own files, taken at test time from the git bundle of the llama.cpp source that the
// node-llama-cpp devDependency ships (node_modules/node-llama-cpp/llama/gitRelease.bundle): the
// vocab-only GGUF files with their tokenizer test vectors (models/ggml-vocab-*.gguf{,.inp,.out})
// and gguf-py (llama.cpp's Python GGUF writer and (de)quantizers). Extracted once per bundle into
// the temp folder; nothing is committed. null when node-llama-cpp or git is missing.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { repoRoot } from './helpers.js';

const BUNDLE = path.join(repoRoot, 'node_modules/node-llama-cpp/llama/gitRelease.bundle');
const WANT = ['models', 'gguf-py'];

/** The folder holding llama.cpp's models/ and gguf-py/, or null (with the reason) when unavailable. */
export function llamaCppSource(): { dir: string | null; why: string } {
  if (!fs.existsSync(BUNDLE)) return { dir: null, why: `${BUNDLE} missing (npm ci installs node-llama-cpp)` };
  const st = fs.statSync(BUNDLE);
  const key = createHash('sha256').update(`${BUNDLE}:${st.size}:${st.mtimeMs}`).digest('hex').slice(0, 12);
  const dir = path.join(os.tmpdir(), `llama-adapter-llamacpp-${key}`);
  if (fs.existsSync(path.join(dir, '.done'))) return { dir, why: '' };
  const tmp = `${dir}.tmp-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp, { recursive: true });
  const git = (args: string[]): boolean => spawnSync('git', args, { cwd: tmp, stdio: 'ignore' }).status === 0;
  const ok =
    git(['init', '-q', '--bare', 'repo.git']) &&
    git(['--git-dir=repo.git', 'fetch', '-q', BUNDLE, 'HEAD']) &&
    spawnSync('sh', ['-c', `git --git-dir=repo.git archive FETCH_HEAD ${WANT.join(' ')} | tar x`], { cwd: tmp, stdio: 'ignore' }).status === 0;
  if (!ok) return { dir: null, why: 'could not extract the llama.cpp bundle with git' };
  fs.rmSync(path.join(tmp, 'repo.git'), { recursive: true, force: true });
  fs.writeFileSync(path.join(tmp, '.done'), '');
  try {
    fs.renameSync(tmp, dir);
  } catch {
    fs.rmSync(tmp, { recursive: true, force: true }); // another test process won the race
  }
  return { dir, why: '' };
}

/** llama.cpp's tokenizer test vectors of a vocab file: [text, expected ids] (test-tokenizer-0's reading). */
export function vocabTests(inp: string, out: string): [string, number[]][] {
  const raw = fs.readFileSync(inp, 'utf8');
  const texts = raw.split('\n__ggml_vocab_test__\n');
  if (texts.at(-1) === '') texts.pop();
  const lines = fs.readFileSync(out, 'utf8').split('\n');
  if (lines.at(-1) === '') lines.pop();
  if (texts.length !== lines.length) throw new Error(`${inp}: ${texts.length} inputs but ${lines.length} outputs`);
  return texts.map((t, i) => [t, lines[i].trim() === '' ? [] : lines[i].trim().split(' ').map(Number)]);
}
