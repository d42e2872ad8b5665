// The PyTorch peer: runs ../shared/reference/bench_torch.py with the system python3 (Debian's
// python3-torch) on the same configuration and settings, and reads back its JSON lines. Its peak
// RSS and CPU time come from GNU time when /usr/bin/time exists.

import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/** PyTorch's (ATen's and oneDNN's) level for a forced LLAMA_ADAPTER_SIMD level. */
function peerSimdEnv(level: string | undefined): Record<string, string> {
  const aten: Record<string, string> = { avx2: 'avx2', sse4: 'default', scalar: 'default' };
  const dnnl: Record<string, string> = { avx2: 'AVX2', sse4: 'SSE41', scalar: 'SSE41' };
  if (!level || !aten[level]) return {};
  return { ATEN_CPU_CAPABILITY: aten[level], ONEDNN_MAX_CPU_ISA: dnnl[level], DNNL_MAX_CPU_ISA: dnnl[level] };
}

export const SYSTEM_PYTHON = '/usr/bin/python3';
const GNU_TIME = '/usr/bin/time';

export interface PeerSettings {
  python: string; // interpreter (the system one, where torch lives)
  script: string; // bench_torch.py
  config: string; // synthetic shape name or an absolute checkpoint path
  threads: number;
  dtype: 'f32' | 'bf16';
  steps: number;
  B: number;
  T: number;
  K: number;
  L: number;
  decode: number; // tokens to decode (0 = none)
}

export type PeerLine = Record<string, unknown>;

export interface PeerRun {
  command: string; // what ran, for the record
  lines: PeerLine[]; // its JSON lines, as printed
  peakRssMb: number | null; // maximum resident set of the python process
  cpuSeconds: number | null; // its user + system CPU time
  seconds: number; // wall time of the whole run (imports and weight setup included)
}

/** Whether `python` can import torch: its version, or why not. */
export function torchStatus(python: string, script: string): { ok: true; version: string } | { ok: false; reason: string } {
  if (!fs.existsSync(script)) return { ok: false, reason: `${script} not found` };
  if (!fs.existsSync(python)) return { ok: false, reason: `${python} not found` };
  const r = spawnSync(python, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8' });
  if (r.error) return { ok: false, reason: `${python}: ${r.error.message}` };
  if (r.status !== 0) {
    const last = (r.stderr || '').trim().split('\n').pop() ?? '';
    return { ok: false, reason: `${python} cannot import torch (${last || `exit ${r.status}`})` };
  }
  return { ok: true, version: r.stdout.trim() };
}

/** Run bench_torch.py once; resolves with its lines, or rejects with its exit status and stderr tail. */
export function runPeer(s: PeerSettings): Promise<PeerRun> {
  const args = [
    s.config,
    '--threads',
    String(s.threads),
    '--dtype',
    s.dtype === 'bf16' ? 'bfloat16' : 'float32',
    '--steps',
    String(s.steps),
    '--batch',
    String(s.B),
    '--seq',
    String(s.T),
    '--prompt-length',
    String(s.K),
    '--layers',
    String(s.L),
    '--decode',
    String(s.decode),
  ];
  return runPythonPeer(s.python, s.script, args, s.threads);
}

/**
 * Run a Python peer script (`python script ...args`, from the script's folder, which is also on
 * PYTHONPATH, with BLAS/OpenMP threads = `threads`) under GNU time; resolves with its JSON lines.
 */
export function runPythonPeer(python: string, script: string, scriptArgs: readonly string[], threads: number): Promise<PeerRun> {
  const s = { python, script, threads };
  const args = [script, ...scriptArgs];
  const command = [s.python, ...args].join(' ');
  const useTime = fs.existsSync(GNU_TIME);
  const tmp = useTime ? fs.mkdtempSync(path.join(os.tmpdir(), 'llama-adapter-bench-')) : null;
  const rssFile = tmp ? path.join(tmp, 'maxrss') : '';
  const [exe, argv] = useTime ? [GNU_TIME, ['-f', '%M %U %S', '-o', rssFile, s.python, ...args]] : [s.python, args];
  const dir = path.dirname(s.script);
  const n = String(s.threads);
  const env = {
    ...process.env,
    PYTHONPATH: [dir, process.env.PYTHONPATH].filter(Boolean).join(path.delimiter),
    OMP_NUM_THREADS: n,
    OPENBLAS_NUM_THREADS: n,
    MKL_NUM_THREADS: n,
    // our kernels forced to a lower SIMD level (LLAMA_ADAPTER_SIMD): PyTorch's own kernels and
    // oneDNN's at the same level (its OpenBLAS follows OPENBLAS_CORETYPE, which the native backend
    // sets then)
    ...peerSimdEnv(process.env.LLAMA_ADAPTER_SIMD),
  };
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(exe, argv, { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.on('error', (e) => reject(new Error(`${command}: ${e.message}`)));
    child.on('close', (code, signal) => {
      const seconds = (performance.now() - t0) / 1000;
      let peakRssMb: number | null = null;
      let cpuSeconds: number | null = null;
      if (tmp) {
        try {
          const [kb, user, sys] = (fs.readFileSync(rssFile, 'utf8').trim().split('\n').pop() ?? '').split(' ').map(Number);
          if (Number.isFinite(kb) && kb > 0) peakRssMb = kb / 1024;
          if (Number.isFinite(user) && Number.isFinite(sys)) cpuSeconds = user + sys;
        } catch {
          // GNU time wrote nothing: leave the RSS unknown
        }
        fs.rmSync(tmp, { recursive: true, force: true });
      }
      if (code !== 0) {
        const tail = err.trim().split('\n').slice(-5).join(' | ');
        reject(new Error(`${command} exited with ${code ?? signal}: ${tail}`));
        return;
      }
      const lines: PeerLine[] = [];
      for (const l of out.split('\n')) {
        const t = l.trim();
        if (!t.startsWith('{')) continue;
        try {
          lines.push(JSON.parse(t) as PeerLine);
        } catch {
          // not a JSON line
        }
      }
      resolve({ command, lines, peakRssMb, cpuSeconds, seconds });
    });
  });
}
