// Compare: one prompt to the base model and any chosen adapters at once (the server batches the
// requests into the same forward passes); the answers stream side by side, each column with its
// token count, tokens per second (from sending the request to its last token) and time to the
// first token.

import { useState } from 'preact/hooks';
import { type Sampling, type StreamStats, streamChat } from './api.js';
import { loadSampling, modelLabel, RunStop, SamplingControls, useModels } from './controls.js';

interface Column {
  model: string;
  text: string;
  stats: StreamStats | null;
  error: string | null;
}

/** "24 tokens · 850 tok/s · first token 12 ms" */
function statsLine(s: StreamStats): string {
  const rate = s.lastMs > 0 ? (s.tokens * 1000) / s.lastMs : 0;
  return `${s.tokens} tokens · ${rate.toFixed(rate < 100 ? 1 : 0)} tok/s · first token ${s.firstMs === null ? '–' : Math.round(s.firstMs)} ms`;
}

export function ComparePage() {
  const { models, error: modelsError } = useModels();
  const [chosen, setChosen] = useState<Set<string> | null>(null); // null: the base and every adapter
  const [prompt, setPrompt] = useState('');
  const [sampling, setSampling] = useState<Sampling>(loadSampling);
  const [columns, setColumns] = useState<Column[]>([]);
  const [busy, setBusy] = useState<AbortController | null>(null);
  const picked = chosen ?? new Set(models.map((m) => m.id));

  async function run(e: Event) {
    e.preventDefault();
    const ids = models.map((m) => m.id).filter((id) => picked.has(id));
    if (!prompt.trim() || ids.length === 0 || busy) return;
    const ac = new AbortController();
    setBusy(ac);
    setColumns(ids.map((model) => ({ model, text: '', stats: null, error: null })));
    const patch = (i: number, f: (c: Column) => Column) => setColumns((cs) => cs.map((c, j) => (j === i ? f(c) : c)));
    const messages = [{ role: 'user' as const, content: prompt }];
    await Promise.all(
      ids.map(async (model, i) => {
        try {
          const stats = await streamChat(model, messages, sampling, (t) => patch(i, (c) => ({ ...c, text: c.text + t })), ac.signal);
          patch(i, (c) => ({ ...c, stats }));
        } catch (err) {
          patch(i, (c) => ({ ...c, error: ac.signal.aborted ? 'stopped' : (err as Error).message }));
        }
      }),
    );
    setBusy(null);
  }

  const toggle = (id: string, on: boolean) => {
    const s = new Set(picked);
    if (on) s.add(id);
    else s.delete(id);
    setChosen(s);
  };

  return (
    <section class="compare" aria-labelledby="compare-title">
      <h1 id="compare-title">Compare</h1>
      <form onSubmit={run}>
        <div class="controls">
          <fieldset class="models">
            <legend>Models</legend>
            {models.map((m) => (
              <div class="check" key={m.id}>
                <input
                  id={`cmp-${m.id}`}
                  type="checkbox"
                  checked={picked.has(m.id)}
                  onChange={(e) => toggle(m.id, e.currentTarget.checked)}
                  disabled={!!busy}
                />
                <label for={`cmp-${m.id}`}>{modelLabel(m)}</label>
              </div>
            ))}
          </fieldset>
          <SamplingControls id="compare" value={sampling} onChange={setSampling} />
        </div>
        {modelsError && <p class="error">{modelsError}</p>}
        <label for="compare-prompt">Prompt</label>
        <textarea id="compare-prompt" rows={3} value={prompt} onInput={(e) => setPrompt(e.currentTarget.value)} />
        <RunStop label="Compare" canRun={!!prompt.trim() && picked.size > 0} busy={busy} />
      </form>
      <div class="columns">
        {columns.map((c) => (
          <section class="column" key={c.model} aria-label={c.model} data-model={c.model} data-done={c.stats || c.error ? 'true' : 'false'}>
            <h2>{c.model}</h2>
            <div class="text">{c.text}</div>
            <p class="stats">{c.error ? <span class="error">{c.error}</span> : c.stats ? statsLine(c.stats) : 'streaming…'}</p>
          </section>
        ))}
      </div>
    </section>
  );
}
