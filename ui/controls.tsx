// Controls the pages share: sampling (temperature, top-p, max tokens, seed; kept in localStorage
// so a reload keeps them), the served models, the run/stop buttons of a streaming request and
// the status line that screen readers announce.

import type { ComponentChildren } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { listModels, type Model, type Sampling } from './api.js';

const KEY = 'llama-adapter.sampling';
const DEFAULTS: Sampling = { temperature: 0.8, top_p: 0.95, max_tokens: 128, seed: null };

export function loadSampling(): Sampling {
  try {
    return { ...DEFAULTS, ...(JSON.parse(localStorage.getItem(KEY) ?? '{}') as Partial<Sampling>) };
  } catch {
    return DEFAULTS;
  }
}

function NumberField(p: {
  id: string;
  label: string;
  value: number | null;
  min: number;
  max: number;
  step: number;
  placeholder?: string;
  onChange: (v: number | null) => void;
}) {
  return (
    <div class="field">
      <label for={p.id}>{p.label}</label>
      <input
        id={p.id}
        type="number"
        inputMode="decimal"
        min={p.min}
        max={p.max}
        step={p.step}
        placeholder={p.placeholder}
        value={p.value ?? ''}
        onChange={(e) => {
          const t = e.currentTarget.value.trim();
          const v = t === '' ? null : Number(t);
          p.onChange(v === null || Number.isFinite(v) ? v : null);
        }}
      />
    </div>
  );
}

/** The four sampling controls; `id` prefixes the inputs' ids (two pages may show them). */
export function SamplingControls({ id, value, onChange }: { id: string; value: Sampling; onChange: (s: Sampling) => void }) {
  const set = (patch: Partial<Sampling>) => {
    const s = { ...value, ...patch };
    localStorage.setItem(KEY, JSON.stringify(s));
    onChange(s);
  };
  const clamp = (v: number | null, lo: number, hi: number, d: number) => (v === null ? d : Math.min(hi, Math.max(lo, v)));
  return (
    <fieldset class="sampling">
      <legend>Sampling</legend>
      <NumberField
        id={`${id}-temperature`}
        label="Temperature"
        value={value.temperature}
        min={0}
        max={2}
        step={0.01}
        onChange={(v) => set({ temperature: clamp(v, 0, 2, 0.8) })}
      />
      <NumberField id={`${id}-top-p`} label="Top-p" value={value.top_p} min={0.01} max={1} step={0.01} onChange={(v) => set({ top_p: clamp(v, 0.01, 1, 1) })} />
      <NumberField
        id={`${id}-max-tokens`}
        label="Max tokens"
        value={value.max_tokens}
        min={1}
        max={100000}
        step={1}
        onChange={(v) => set({ max_tokens: Math.round(clamp(v, 1, 100000, 128)) })}
      />
      <NumberField
        id={`${id}-seed`}
        label="Seed"
        value={value.seed}
        min={0}
        max={2147483647}
        step={1}
        placeholder="random"
        onChange={(v) => set({ seed: v === null ? null : Math.round(Math.max(0, v)) })}
      />
    </fieldset>
  );
}

/** The served models (base first), reloaded when `refresh` changes; errors as text. */
export function useModels(refresh = 0): { models: Model[]; error: string | null } {
  const [models, setModels] = useState<Model[]>([]);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    listModels().then(
      (m) => {
        setModels(m);
        setError(null);
      },
      (e: Error) => setError(e.message),
    );
  }, [refresh]);
  return { models, error };
}

export const modelLabel = (m: Model): string => (m.parent === null ? `${m.id} (base)` : m.id);

/** A submit button (`label`) and Stop, which aborts the running request. */
export function RunStop({ label, canRun, busy }: { label: string; canRun: boolean; busy: AbortController | null }) {
  return (
    <div class="buttons">
      <button type="submit" disabled={!!busy || !canRun}>
        {label}
      </button>
      <button type="button" onClick={() => busy?.abort()} disabled={!busy}>
        Stop
      </button>
    </div>
  );
}

/** The page's status line (a polite live region). */
export function StatusLine({ children }: { children: ComponentChildren }) {
  return (
    <p role="status" class="status">
      {children}
    </p>
  );
}
