// Fine-tuning: upload a data file (Alpaca or chat records, JSONL or JSON), start a job with its
// hyperparameters, and watch it: progress with ETA, live training loss, validation loss and
// learning-rate curves (uPlot) from the job's event stream (SSE), cancel / pause / resume, and a
// button to chat with the fine-tuned model once the job has succeeded.

import { useEffect, useRef, useState } from 'preact/hooks';
import uPlot from 'uplot';
import { api, type Job, type JobEvent, listModels, sse } from './api.js';
import { navigate } from './route.js';
import { StatusLine } from './controls.js';
import { ScrollRegion } from './scroll.js';

const ACTIVE = ['validating_files', 'queued', 'running'];

interface Curves {
  steps: number[];
  loss: number[];
  lr: number[];
  val: Map<number, number>; // step -> validation loss (at epoch ends)
  total: number;
  epoch: number;
  etaS: number | null;
}

const emptyCurves = (): Curves => ({ steps: [], loss: [], lr: [], val: new Map(), total: 0, epoch: 0, etaS: null });

function eta(s: number | null): string {
  if (s === null || !Number.isFinite(s)) return '–';
  const m = Math.floor(s / 60);
  return m ? `${m} min ${Math.round(s % 60)} s` : `${Math.round(s)} s`;
}

/** A uPlot line chart of `series` over `xs` that follows its container's width. */
function Chart(props: {
  label: string;
  xs: number[];
  series: { name: string; colour: string; values: (number | null)[]; points?: boolean }[];
  yLog?: boolean;
}) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const names = props.series.map((s) => s.name).join('|');
  useEffect(() => {
    const el = box.current!;
    const u = new uPlot(
      {
        width: Math.max(240, el.clientWidth),
        height: 220,
        scales: { x: { time: false } },
        axes: [{ label: 'step' }, {}],
        series: [
          { label: 'step' },
          ...props.series.map((s) => ({ label: s.name, stroke: s.colour, width: 2, spanGaps: true, points: { show: s.points ?? false, size: 6 } })),
        ],
      },
      [[], ...props.series.map(() => [])],
      el,
    );
    plot.current = u;
    const ro = new ResizeObserver(() => u.setSize({ width: Math.max(240, el.clientWidth), height: 220 }));
    ro.observe(el);
    return () => {
      ro.disconnect();
      u.destroy();
    };
  }, [names]);
  useEffect(() => {
    plot.current?.setData([props.xs, ...props.series.map((s) => s.values)] as uPlot.AlignedData);
  });
  const last = props.series.map((s) => `${s.name} ${s.values.findLast((v) => v !== null)?.toPrecision(4) ?? '–'}`).join(', ');
  return <div class="chart" ref={box} role="img" aria-label={`${props.label}: ${props.xs.length} steps; latest ${last}`} data-points={props.xs.length} />;
}

function JobView({ job, onChange }: { job: Job; onChange: (j: Job) => void }) {
  const [curves, setCurves] = useState<Curves>(emptyCurves);
  const [log, setLog] = useState<string[]>([]);
  const [error, setError] = useState<string | null>(null);
  const jobRef = useRef(job);
  jobRef.current = job;

  // What the event stream has drawn so far, for the job's lifetime. The server ends the stream
  // when the job stops (paused included); the effect below opens it again when the job stops (the
  // replay brings events that came after the end, such as the step in flight at a pause) and when
  // it is resumed. Each replay starts from the first event: those already seen are skipped, so a
  // restart never empties the charts for a moment.
  const [drawn] = useState(() => ({ c: emptyCurves(), messages: [] as string[], seen: new Set<string>() }));

  // the event stream: every event so far, then live ones, until the job stops
  useEffect(() => {
    const ac = new AbortController();
    const { c, messages, seen } = drawn;
    let frame = 0;
    const draw = () => {
      frame = 0;
      setCurves({ ...c, steps: [...c.steps], loss: [...c.loss], lr: [...c.lr], val: new Map(c.val) });
      setLog([...messages]);
    };
    (async () => {
      for await (const e of sse<JobEvent>(`/v1/fine_tuning/jobs/${job.id}/events?stream=true`, { signal: ac.signal })) {
        if (seen.has(e.id)) continue;
        seen.add(e.id);
        const d = e.data;
        if (e.type === 'metrics' && d.train_loss !== undefined && d.step !== undefined) {
          c.steps.push(d.step);
          c.loss.push(d.train_loss);
          c.lr.push(d.learning_rate ?? 0);
          c.total = d.total_steps ?? c.total;
          c.epoch = d.epoch ?? c.epoch;
          c.etaS = d.eta_s ?? null;
        } else {
          if (e.type === 'metrics' && d.valid_loss != null && d.step !== undefined) c.val.set(d.step, d.valid_loss);
          messages.push(e.message);
          if (d.status) onChange(await api<Job>(`/v1/fine_tuning/jobs/${job.id}`));
        }
        frame ||= requestAnimationFrame(draw);
      }
      cancelAnimationFrame(frame);
      draw();
      onChange(await api<Job>(`/v1/fine_tuning/jobs/${job.id}`));
    })().catch((e: Error) => {
      if (!ac.signal.aborted) setError(e.message);
    });
    return () => ac.abort();
  }, [job.id, ACTIVE.includes(job.status)]);

  const act = async (what: 'cancel' | 'pause' | 'resume') => {
    try {
      onChange(await api<Job>(`/v1/fine_tuning/jobs/${job.id}/${what}`, { method: 'POST', body: {} }));
    } catch (e) {
      setError((e as Error).message);
    }
  };
  const step = curves.steps.at(-1) ?? 0;
  const val = curves.steps.map((s) => curves.val.get(s) ?? null);
  const h = job.hyperparameters;
  return (
    <section class="job" aria-labelledby="job-title">
      <h2 id="job-title">
        Job {job.id} <span class={`badge ${job.status}`}>{job.status}</span>
      </h2>
      <p class="meta">
        {h.n_epochs} epochs, batch {h.batch_size}, lr ×{h.learning_rate_multiplier}, K={h.prompt_length}, L={h.adapter_layers}, {h.gate}, {h.prompt_style}{' '}
        prompts
        {job.trained_tokens !== null && `, ${job.trained_tokens.toLocaleString('en')} tokens trained`}
      </p>
      <div class="progress">
        <label for="job-progress">Progress</label>
        <progress id="job-progress" max={curves.total || 1} value={job.status === 'succeeded' ? curves.total || 1 : step} />
        <span>
          step {step} of {curves.total || '?'} · epoch {curves.epoch.toFixed(2)} · ETA {job.status === 'running' ? eta(curves.etaS) : '–'}
        </span>
      </div>
      <div class="buttons">
        {ACTIVE.includes(job.status) && (
          <button type="button" onClick={() => act('pause')}>
            Pause
          </button>
        )}
        {job.status === 'paused' && (
          <button type="button" onClick={() => act('resume')}>
            Resume
          </button>
        )}
        {(ACTIVE.includes(job.status) || job.status === 'paused') && (
          <button type="button" onClick={() => act('cancel')}>
            Cancel job
          </button>
        )}
        {job.fine_tuned_model && (
          <button type="button" class="primary" onClick={() => navigate('chat', { model: job.fine_tuned_model! })}>
            Chat with {job.fine_tuned_model}
          </button>
        )}
      </div>
      {job.error && <p class="error">{job.error.message}</p>}
      {error && <p class="error">{error}</p>}
      <div class="charts">
        <div>
          <h3>Loss</h3>
          <Chart
            label="Training and validation loss by step"
            xs={curves.steps}
            series={[
              { name: 'training loss', colour: '#1f5fa8', values: curves.loss },
              { name: 'validation loss', colour: '#b3261e', values: val, points: true },
            ]}
          />
        </div>
        <div>
          <h3>Learning rate</h3>
          <Chart label="Learning rate by step" xs={curves.steps} series={[{ name: 'learning rate', colour: '#2e7d32', values: curves.lr }]} />
        </div>
      </div>
      <details>
        <summary>Events ({log.length})</summary>
        <ol class="events">
          {log.map((m, i) => (
            <li key={i}>{m}</li>
          ))}
        </ol>
      </details>
    </section>
  );
}

function numberOrUndefined(v: string): number | undefined {
  return v.trim() === '' ? undefined : Number(v);
}

export function FinetunePage() {
  const [jobs, setJobs] = useState<Job[]>([]);
  const [selected, setSelected] = useState<string | null>(null);
  const [status, setStatus] = useState('');
  const [busy, setBusy] = useState(false);
  const form = useRef<HTMLFormElement>(null);

  const refresh = () =>
    api<{ data: Job[] }>('/v1/fine_tuning/jobs?limit=100').then(
      (r) => {
        setJobs(r.data);
        setSelected((s) => s ?? r.data[0]?.id ?? null);
      },
      (e: Error) => setStatus(`Error: ${e.message}`),
    );
  useEffect(() => {
    refresh();
  }, []);

  async function start(e: Event) {
    e.preventDefault();
    const f = new FormData(form.current!);
    const train = f.get('training') as File | null;
    const valFile = f.get('validation') as File | null;
    if (!train?.name) return setStatus('Choose a training data file');
    setBusy(true);
    try {
      const upload = async (file: File) => {
        const body = new FormData();
        body.set('purpose', 'fine-tune');
        body.set('file', file, file.name);
        return (await api<{ id: string; records: number }>('/v1/files', { body })).id;
      };
      setStatus(`Uploading ${train.name}…`);
      const training_file = await upload(train);
      const validation_file = valFile?.name ? await upload(valFile) : undefined;
      const base = (await listModels()).find((m) => m.parent === null)!.id;
      const s = (k: string) => String(f.get(k) ?? '');
      const hyperparameters = Object.fromEntries(
        Object.entries({
          n_epochs: numberOrUndefined(s('epochs')),
          batch_size: numberOrUndefined(s('batch')),
          learning_rate_multiplier: numberOrUndefined(s('lrm')),
          prompt_length: numberOrUndefined(s('k')),
          adapter_layers: numberOrUndefined(s('l')),
          gate: s('gate') || undefined,
          prompt_style: s('style') || undefined,
        }).filter(([, v]) => v !== undefined),
      );
      const job = await api<Job>('/v1/fine_tuning/jobs', {
        body: { model: base, training_file, validation_file, hyperparameters, ...(s('suffix') ? { suffix: s('suffix') } : {}) },
      });
      setStatus(`Started job ${job.id}`);
      setSelected(job.id);
      await refresh();
    } catch (err) {
      setStatus(`Error: ${(err as Error).message}`);
    } finally {
      setBusy(false);
    }
  }

  const current = jobs.find((j) => j.id === selected) ?? null;
  const onChange = (j: Job) => setJobs((js) => (js.some((x) => x.id === j.id) ? js.map((x) => (x.id === j.id ? j : x)) : [j, ...js]));

  return (
    <section class="finetune" aria-labelledby="finetune-title">
      <h1 id="finetune-title">Fine-tuning</h1>
      <form ref={form} class="new-job" onSubmit={start}>
        <h2>New job</h2>
        <div class="controls">
          <div class="field wide">
            <label for="ft-training">Training data (JSONL or JSON: Alpaca or chat records)</label>
            <input id="ft-training" name="training" type="file" accept=".jsonl,.json,application/json" required />
          </div>
          <div class="field wide">
            <label for="ft-validation">Validation data (optional; else a tenth of the training file is held out)</label>
            <input id="ft-validation" name="validation" type="file" accept=".jsonl,.json,application/json" />
          </div>
        </div>
        <fieldset class="controls">
          <legend>Hyperparameters (empty = default)</legend>
          <div class="field">
            <label for="ft-epochs">Epochs</label>
            <input id="ft-epochs" name="epochs" type="number" min={1} max={1000} placeholder="5" />
          </div>
          <div class="field">
            <label for="ft-batch">Batch size</label>
            <input id="ft-batch" name="batch" type="number" min={1} max={1024} placeholder="4" />
          </div>
          <div class="field">
            <label for="ft-lrm">Learning rate multiplier</label>
            <input id="ft-lrm" name="lrm" type="number" min={0} step="any" placeholder="1" />
          </div>
          <div class="field">
            <label for="ft-k">Prompt length (K)</label>
            <input id="ft-k" name="k" type="number" min={1} placeholder="10" />
          </div>
          <div class="field">
            <label for="ft-l">Adapted layers (L)</label>
            <input id="ft-l" name="l" type="number" min={1} placeholder="30 or all" />
          </div>
          <div class="field">
            <label for="ft-gate">Gate convention</label>
            <select id="ft-gate" name="gate">
              <option value="">tanh-per-head (default)</option>
              <option value="raw-per-head">raw-per-head</option>
              <option value="raw-per-layer">raw-per-layer</option>
            </select>
          </div>
          <div class="field">
            <label for="ft-style">Prompt style</label>
            <select id="ft-style" name="style">
              <option value="">alpaca (default)</option>
              <option value="plain">plain</option>
            </select>
          </div>
          <div class="field">
            <label for="ft-suffix">Model name suffix</label>
            <input id="ft-suffix" name="suffix" pattern="[A-Za-z0-9._\-]+" maxLength={64} placeholder="optional" />
          </div>
        </fieldset>
        <button type="submit" class="primary" disabled={busy}>
          Start fine-tuning
        </button>
      </form>
      <StatusLine>{status}</StatusLine>
      <h2>Jobs</h2>
      <ScrollRegion label="Fine-tuning jobs">
        <table class="list">
          <thead>
            <tr>
              <th scope="col">Job</th>
              <th scope="col">Status</th>
              <th scope="col">Created</th>
              <th scope="col">Fine-tuned model</th>
            </tr>
          </thead>
          <tbody>
            {jobs.length === 0 && (
              <tr>
                <td colSpan={4}>No jobs yet.</td>
              </tr>
            )}
            {jobs.map((j) => (
              <tr key={j.id} aria-current={j.id === selected ? 'true' : undefined}>
                <th scope="row">
                  <button type="button" class="link" onClick={() => setSelected(j.id)}>
                    {j.id}
                  </button>
                </th>
                <td>
                  <span class={`badge ${j.status}`}>{j.status}</span>
                </td>
                <td>{new Date(j.created_at * 1000).toLocaleString('en')}</td>
                <td>{j.fine_tuned_model ?? '–'}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </ScrollRegion>
      {current && <JobView key={current.id} job={current} onChange={onChange} />}
    </section>
  );
}
