// In the browser: the model runs in this page. The library's browser build (/lib/llama-adapter.js,
// loaded when the page opens: the UI imports nothing of the library at build time) fetches the
// server's base model file by file (or takes files chosen here), computes on WebGPU (or the
// TypeScript backend), generates, trains an adapter, and uploads the adapter to the server, which
// then serves it like any other. `window.llamaAdapterPage` holds the live objects for automation.

import { useRef, useState } from 'preact/hooks';
import { ApiError, apiKey } from './api.js';
import { StatusLine } from './controls.js';

/** What this page uses of the library's browser build (src/browser.ts). */
interface PageModel {
  config: { nLayers: number; maxSeqLen: number };
  backend: { name: string; adapter?: string };
  info: { path: string };
}
type PageAdapter = object;
interface PageLib {
  fetchModel(url: string, o: { backend: string }): Promise<PageModel>;
  openModel(files: Record<string, Uint8Array>, o: { backend: string; name: string }): Promise<PageModel>;
  createAdapter(m: PageModel, o: { promptLength: number; adapterLayers: number; seed: number }): PageAdapter;
  trainAdapter(
    m: PageModel,
    a: PageAdapter,
    records: unknown[],
    o: { steps: number; lr: number; onStep: (s: number, l: number) => void },
  ): Promise<{ losses: number[] }>;
  adapterBytes(a: PageAdapter): Uint8Array;
  generateBatch(
    m: PageModel,
    prompts: string[],
    o: { temperature: number; maxTokens: number },
    adapters?: (PageAdapter | null)[],
  ): Promise<{ ids: number[]; text: string }[]>;
  parseInstructionData(text: string, name: string): unknown[];
}

const LIB = '/lib/llama-adapter.js';
const EXAMPLES = ['Tom', 'Lily', 'Sue', 'Ben']
  .flatMap((n) => ['ball', 'cat', 'tree'].map((t) => ({ instruction: `Write a story about ${n} and a ${t}.`, output: `${n} saw a ${t}. ${n} was happy.` })))
  .map((r) => JSON.stringify(r))
  .join('\n');

declare global {
  interface Window {
    llamaAdapterPage?: { lib: PageLib; model: PageModel | null; adapter: PageAdapter | null };
  }
}

export function LocalPage() {
  const [backend, setBackend] = useState('webgpu');
  const [model, setModel] = useState<PageModel | null>(null);
  const [status, setStatus] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [prompt, setPrompt] = useState('Once upon a time');
  const [maxTokens, setMaxTokens] = useState(24);
  const [useAdapter, setUseAdapter] = useState(false);
  const [output, setOutput] = useState<{ ids: number[]; text: string } | null>(null);
  const [data, setData] = useState(EXAMPLES);
  const [steps, setSteps] = useState(20);
  const [lr, setLr] = useState(0.02);
  const [losses, setLosses] = useState<number[]>([]);
  const [name, setName] = useState('in-page');
  const adapter = useRef<PageAdapter | null>(null);
  const lib = useRef<PageLib | null>(null);

  /** Run `f` with the page busy; errors shown. */
  const run = async (what: string, f: (l: PageLib) => Promise<string>): Promise<void> => {
    setBusy(true);
    setError(null);
    setStatus(`${what}…`);
    try {
      lib.current ??= (await import(/* computed: the library is served, not bundled */ LIB.toString())) as PageLib;
      setStatus(await f(lib.current));
    } catch (e) {
      setStatus('');
      setError(e instanceof Error ? e.message : String(e));
    } finally {
      setBusy(false);
      window.llamaAdapterPage = lib.current ? { lib: lib.current, model: window.llamaAdapterPage?.model ?? null, adapter: adapter.current } : undefined;
    }
  };

  const loaded = (m: PageModel): string => {
    setModel(m);
    adapter.current = null;
    setLosses([]);
    window.llamaAdapterPage = { lib: lib.current!, model: m, adapter: null };
    return `${m.info.path} loaded in this page, on ${m.backend.name}${m.backend.adapter ? ` (${m.backend.adapter})` : ''}`;
  };

  const loadServer = () => run('Loading the server’s model', async (l) => loaded(await l.fetchModel('/v1/model', { backend })));
  const loadFiles = (list: FileList | null) =>
    run('Reading the files', async (l) => {
      const files: Record<string, Uint8Array> = {};
      for (const f of Array.from(list ?? [])) files[f.name] = new Uint8Array(await f.arrayBuffer());
      return loaded(await l.openModel(files, { backend, name: 'local files' }));
    });
  const gen = () =>
    run('Generating', async (l) => {
      const [r] = await l.generateBatch(model!, [prompt], { temperature: 0, maxTokens }, [useAdapter ? adapter.current : null]);
      setOutput(r);
      return `${r.ids.length} tokens, greedy${useAdapter ? ', with the adapter' : ''}`;
    });
  const train = () =>
    run('Training', async (l) => {
      const records = l.parseInstructionData(data, 'training data');
      adapter.current = l.createAdapter(model!, { promptLength: 10, adapterLayers: Math.min(2, model!.config.nLayers), seed: 0 });
      const seen: number[] = [];
      setLosses([]);
      await l.trainAdapter(model!, adapter.current, records, {
        steps,
        lr,
        onStep: (_s, loss) => {
          seen.push(loss);
          setLosses([...seen]);
        },
      });
      setUseAdapter(true);
      return `trained ${seen.length} steps: loss ${seen[0].toFixed(3)} → ${seen[seen.length - 1].toFixed(3)}`;
    });
  const upload = () =>
    run('Uploading', async (l) => {
      const bytes = l.adapterBytes(adapter.current!);
      const body = new Blob([bytes.slice().buffer]);
      const h: Record<string, string> = { 'content-type': 'application/octet-stream' };
      if (apiKey.get()) h.authorization = `Bearer ${apiKey.get()}`;
      const res = await fetch(`/v1/adapters/${encodeURIComponent(name)}/file`, { method: 'PUT', headers: h, body });
      if (!res.ok) {
        const e = (await res.json().catch(() => null)) as { error?: { message?: string } } | null;
        throw new ApiError(e?.error?.message ?? `${res.status} ${res.statusText}`, res.status);
      }
      return `uploaded: the server serves it as "${name}"`;
    });

  return (
    <section class="page local" aria-labelledby="local-title">
      <h1 id="local-title">In the browser</h1>
      <p>The model runs in this page (WebGPU, or plain JavaScript without it): generation and adapter training happen here, not on the server.</p>
      <fieldset disabled={busy}>
        <legend>Model</legend>
        <label for="local-backend">Backend</label>
        <select id="local-backend" value={backend} onChange={(e) => setBackend(e.currentTarget.value)}>
          <option value="webgpu">WebGPU</option>
          <option value="ts">TypeScript (CPU)</option>
          <option value="auto">WebGPU if available</option>
        </select>
        <button type="button" onClick={loadServer}>
          Load the server’s model
        </button>
        <label for="local-files">Or a model’s files (config.json, model.safetensors, tokenizer.json)</label>
        <input id="local-files" type="file" multiple onChange={(e) => loadFiles(e.currentTarget.files)} />
      </fieldset>
      <StatusLine>
        {error ? (
          <span class="error" role="alert">
            {error}
          </span>
        ) : (
          <span data-busy={busy}>{status}</span>
        )}
      </StatusLine>
      {model && (
        <>
          <fieldset disabled={busy}>
            <legend>Generate</legend>
            <label for="local-prompt">Prompt</label>
            <textarea id="local-prompt" rows={2} value={prompt} onInput={(e) => setPrompt(e.currentTarget.value)} />
            <label for="local-max">Max tokens</label>
            <input
              id="local-max"
              type="number"
              min={1}
              max={model.config.maxSeqLen}
              value={maxTokens}
              onInput={(e) => setMaxTokens(Number(e.currentTarget.value))}
            />
            <label>
              <input type="checkbox" checked={useAdapter} disabled={!adapter.current} onChange={(e) => setUseAdapter(e.currentTarget.checked)} /> With the
              adapter trained here
            </label>
            <button type="button" onClick={gen}>
              Generate
            </button>
            {output && (
              <output class="local-output" data-ids={output.ids.join(',')} for="local-prompt">
                {output.text}
              </output>
            )}
          </fieldset>
          <fieldset disabled={busy}>
            <legend>Train an adapter here</legend>
            <label for="local-data">Training records (JSONL: instruction, output)</label>
            <textarea id="local-data" rows={6} value={data} onInput={(e) => setData(e.currentTarget.value)} />
            <label for="local-steps">Steps</label>
            <input id="local-steps" type="number" min={1} max={1000} value={steps} onInput={(e) => setSteps(Number(e.currentTarget.value))} />
            <label for="local-lr">Learning rate</label>
            <input id="local-lr" type="number" min={0.0001} max={1} step={0.001} value={lr} onInput={(e) => setLr(Number(e.currentTarget.value))} />
            <button type="button" onClick={train}>
              Train
            </button>
            {losses.length > 0 && (
              <ol class="local-losses" aria-label="Loss per step" data-losses={losses.join(',')}>
                {losses.map((l, i) => (
                  <li key={i}>{l.toFixed(4)}</li>
                ))}
              </ol>
            )}
          </fieldset>
          {adapter.current && losses.length > 0 && (
            <fieldset disabled={busy}>
              <legend>Upload the adapter</legend>
              <label for="local-name">Name on the server</label>
              <input id="local-name" value={name} onInput={(e) => setName(e.currentTarget.value)} />
              <button type="button" onClick={upload}>
                Upload to the server
              </button>
            </fieldset>
          )}
        </>
      )}
    </section>
  );
}
