// Adapters: the loaded adapters with their metadata (file, size, K, L, gate convention, parameter
// count, base fingerprint, training arguments), the effective gate of every head of every adapted
// layer as a heat map (what the zero-initialised gates learned to let through), and loading and
// unloading adapter files from the server's adapter directory.

import { useEffect, useState } from 'preact/hooks';
import { type AdapterInfo, api } from './api.js';
import { StatusLine } from './controls.js';
import { ScrollRegion } from './scroll.js';

interface AdapterList {
  data: AdapterInfo[];
  available: string[];
  adapter_dir: boolean;
}

function bytes(n: number | null): string {
  if (n === null) return 'file gone';
  return n < 1024 ? `${n} B` : n < 1 << 20 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / (1 << 20)).toFixed(2)} MiB`;
}

/** sRGB relative luminance (WCAG) of an 8-bit colour. */
function luminance(rgb: number[]): number {
  const [r, g, b] = rgb.map((c) => (c / 255 <= 0.04045 ? c / 255 / 12.92 : ((c / 255 + 0.055) / 1.055) ** 2.4));
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}

/** Diverging colour for v in [-max, max] (blue below zero, white at zero, red above) and black or white text, whichever contrasts more (at least 4.5:1). */
function colours(v: number, max: number): { background: string; color: string } {
  const t = max > 0 ? Math.min(1, Math.abs(v) / max) : 0;
  const end = v >= 0 ? [178, 24, 43] : [33, 102, 172];
  const bg = end.map((c) => Math.round(255 + (c - 255) * t));
  const L = luminance(bg);
  return { background: `rgb(${bg.join(', ')})`, color: (L + 0.05) / 0.05 >= 1.05 / (L + 0.05) ? '#000' : '#fff' };
}

export function GateHeatMap({ info }: { info: AdapterInfo }) {
  const g = info.gates;
  if (!g) return null;
  const max = Math.max(...g.effective.flat().map(Math.abs));
  const heads = g.effective[0]?.length ?? 0;
  return (
    <figure class="heatmap-figure">
      <figcaption id="heatmap-caption">
        Effective gate per head and layer of <strong>{info.id}</strong> ({info.gate}; colour scale ±{max.toPrecision(3)}, white = 0: the prompt branch is shut)
      </figcaption>
      <ScrollRegion label="Gate heat map">
        <table class="heatmap" data-layers={g.layers.length} data-heads={heads}>
          <thead>
            <tr>
              <th scope="col">Layer</th>
              {Array.from({ length: heads }, (_, h) => (
                <th scope="col" key={h}>
                  Head {h}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {g.layers.map((layer, i) => (
              <tr key={layer}>
                <th scope="row">{layer}</th>
                {g.effective[i].map((v, h) => (
                  <td key={h} style={colours(v, max)} data-layer={layer} data-head={h} data-value={String(v)} title={`layer ${layer}, head ${h}: ${v}`}>
                    {v.toFixed(2)}
                  </td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
      </ScrollRegion>
    </figure>
  );
}

export function AdaptersPage() {
  const [list, setList] = useState<AdapterList | null>(null);
  const [selected, setSelected] = useState<AdapterInfo | null>(null);
  const [file, setFile] = useState('');
  const [name, setName] = useState('');
  const [status, setStatus] = useState('');
  const [refresh, setRefresh] = useState(0);

  useEffect(() => {
    api<AdapterList>('/v1/adapters').then(setList, (e: Error) => setStatus(`Error: ${e.message}`));
  }, [refresh]);
  useEffect(() => {
    if (!selected && list?.data[0]) show(list.data[0].id);
  }, [list]);

  async function show(id: string) {
    try {
      setSelected(await api<AdapterInfo>(`/v1/adapters/${encodeURIComponent(id)}`));
    } catch (e) {
      setStatus(`Error: ${(e as Error).message}`);
    }
  }

  async function load(e: Event) {
    e.preventDefault();
    const n = name.trim() || file.replace(/\.safetensors$/, '');
    try {
      await api('/v1/adapters', { body: { name: n, path: file } });
      setStatus(`Loaded ${file} as ${n}`);
      setName('');
      setRefresh((x) => x + 1);
      show(n);
    } catch (err) {
      setStatus(`Error: ${(err as Error).message}`);
    }
  }

  async function unload(id: string) {
    try {
      await api(`/v1/adapters/${encodeURIComponent(id)}`, { method: 'DELETE' });
      setStatus(`Unloaded ${id}`);
      if (selected?.id === id) setSelected(null);
      setRefresh((x) => x + 1);
    } catch (err) {
      setStatus(`Error: ${(err as Error).message}`);
    }
  }

  return (
    <section class="adapters" aria-labelledby="adapters-title">
      <h1 id="adapters-title">Adapters</h1>
      <ScrollRegion label="Loaded adapters">
        <table class="list">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">K</th>
              <th scope="col">L</th>
              <th scope="col">Gate</th>
              <th scope="col">Parameters</th>
              <th scope="col">Size</th>
              <th scope="col">Actions</th>
            </tr>
          </thead>
          <tbody>
            {list?.data.length === 0 && (
              <tr>
                <td colSpan={7}>No adapters are loaded.</td>
              </tr>
            )}
            {list?.data.map((a) => (
              <tr key={a.id} aria-current={selected?.id === a.id ? 'true' : undefined}>
                <th scope="row" class="name">
                  {a.id}
                </th>
                <td>{a.prompt_length}</td>
                <td>{a.adapter_layers}</td>
                <td>{a.gate}</td>
                <td>{a.parameters.toLocaleString('en')}</td>
                <td>{bytes(a.file_bytes)}</td>
                <td class="actions">
                  <button type="button" onClick={() => show(a.id)} aria-label={`Show the details and gates of ${a.id}`}>
                    Details
                  </button>
                  <button type="button" onClick={() => unload(a.id)} aria-label={`Unload ${a.id}`}>
                    Unload
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </ScrollRegion>
      <form class="load" onSubmit={load}>
        <h2>Load an adapter</h2>
        {list && !list.adapter_dir && <p>The server was started without --adapter-dir: files cannot be loaded while it runs.</p>}
        <div class="controls">
          <div class="field">
            <label for="load-file">File in the adapter directory</label>
            <select id="load-file" value={file} onChange={(e) => setFile(e.currentTarget.value)} disabled={!list?.available.length}>
              <option value="">Choose a file</option>
              {list?.available.map((f) => (
                <option key={f} value={f}>
                  {f}
                </option>
              ))}
            </select>
          </div>
          <div class="field">
            <label for="load-name">Name</label>
            <input id="load-name" value={name} placeholder={file.replace(/\.safetensors$/, '') || 'model id'} onInput={(e) => setName(e.currentTarget.value)} />
          </div>
          <button type="submit" disabled={!file}>
            Load
          </button>
        </div>
      </form>
      <StatusLine>{status}</StatusLine>
      {selected && (
        <>
          <h2>{selected.id}</h2>
          <dl class="args">
            <div>
              <dt>File</dt>
              <dd class="path">{selected.file}</dd>
            </div>
            <div>
              <dt>Size</dt>
              <dd>{bytes(selected.file_bytes)}</dd>
            </div>
            <div>
              <dt>Base fingerprint</dt>
              <dd>
                <code>{selected.base_fingerprint}</code>
              </dd>
            </div>
            <div>
              <dt>Adapted layers</dt>
              <dd>
                {selected.first_layer}–{selected.first_layer + selected.adapter_layers - 1} (L={selected.adapter_layers}), K={selected.prompt_length}
              </dd>
            </div>
            <div>
              <dt>Parameters</dt>
              <dd>{selected.parameters.toLocaleString('en')}</dd>
            </div>
            <div>
              <dt>Loaded</dt>
              <dd>{new Date(selected.created * 1000).toLocaleString('en')}</dd>
            </div>
          </dl>
          <h3>Gates</h3>
          <GateHeatMap info={selected} />
          <h3>Training arguments</h3>
          {selected.training_args ? (
            <dl class="args">
              {Object.entries(selected.training_args).map(([k, v]) => (
                <div key={k}>
                  <dt>{k}</dt>
                  <dd>{JSON.stringify(v)}</dd>
                </div>
              ))}
            </dl>
          ) : (
            <p>The file records none.</p>
          )}
        </>
      )}
    </section>
  );
}
