// Chat: talk to the base model or any adapter. Answers stream in; Stop aborts the request (the
// server frees the slot at once); sampling controls; conversations kept in localStorage and
// exportable as JSON. `model` (from #/chat?model=ID) starts a conversation with that model.

import { useEffect, useRef, useState } from 'preact/hooks';
import { type Sampling, streamChat } from './api.js';
import { type Conversation, downloadJson, loadConversations, newConversation, saveConversations, type Turn } from './conversations.js';
import { loadSampling, modelLabel, RunStop, SamplingControls, StatusLine, useModels } from './controls.js';

export function ChatPage({ model: wanted }: { model: string | null }) {
  const { models, error: modelsError } = useModels();
  const [convs, setConvs] = useState<Conversation[]>(loadConversations);
  const [currentId, setCurrentId] = useState<string | null>(convs[0]?.id ?? null);
  const [sampling, setSampling] = useState<Sampling>(loadSampling);
  const [input, setInput] = useState('');
  const [busy, setBusy] = useState<AbortController | null>(null);
  const [status, setStatus] = useState('');
  const listEnd = useRef<HTMLLIElement>(null);

  const current = convs.find((c) => c.id === currentId) ?? null;
  const model = current?.model ?? wanted ?? models[0]?.id ?? '';

  const update = (id: string, f: (c: Conversation) => Conversation, persist = false) => {
    setConvs((cs) => {
      const next = cs.map((c) => (c.id === id ? f(c) : c));
      if (persist) saveConversations(next);
      return next;
    });
  };

  // #/chat?model=ID: a conversation with that model (this one if it is still empty)
  useEffect(() => {
    if (!wanted) return;
    if (current && current.turns.length === 0) update(current.id, (c) => ({ ...c, model: wanted }), true);
    else startNew(wanted);
  }, [wanted]);

  useEffect(() => listEnd.current?.scrollIntoView({ block: 'nearest' }), [current?.turns.length]);

  function startNew(m: string): Conversation {
    const c = newConversation(m);
    setConvs((cs) => {
      const next = [c, ...cs];
      saveConversations(next);
      return next;
    });
    setCurrentId(c.id);
    return c;
  }

  async function send(e: Event) {
    e.preventDefault();
    const text = input.trim();
    if (!text || busy || !model) return;
    const conv = current ?? startNew(model);
    const history = [...conv.turns.filter((t) => !t.error), { role: 'user' as const, content: text }];
    const title = conv.turns.length === 0 ? text.slice(0, 60) : conv.title;
    update(
      conv.id,
      (c) => ({ ...c, title, model, updated: Date.now(), turns: [...c.turns, { role: 'user', content: text }, { role: 'assistant', content: '', model }] }),
      true,
    );
    setInput('');
    const ac = new AbortController();
    setBusy(ac);
    setStatus(`${model} is answering…`);
    // tokens can arrive faster than frames: append them to the last turn once per frame
    let pending = '';
    let frame = 0;
    const flush = (patch: Partial<Turn> = {}, persist = false) => {
      const add = pending;
      pending = '';
      update(conv.id, (c) => ({ ...c, turns: c.turns.map((t, i) => (i === c.turns.length - 1 ? { ...t, content: t.content + add, ...patch } : t)) }), persist);
    };
    try {
      const stats = await streamChat(
        model,
        history.map(({ role, content }) => ({ role, content })),
        sampling,
        (piece) => {
          pending += piece;
          frame ||= requestAnimationFrame(() => {
            frame = 0;
            flush();
          });
        },
        ac.signal,
      );
      cancelAnimationFrame(frame);
      flush({}, true);
      setStatus(`Answered: ${stats.tokens} tokens (${stats.finish === 'length' ? 'max tokens reached' : 'finished'})`);
    } catch (err) {
      cancelAnimationFrame(frame);
      if (ac.signal.aborted) {
        flush({ stopped: true }, true);
        setStatus('Stopped');
      } else {
        flush({ error: (err as Error).message }, true);
        setStatus(`Error: ${(err as Error).message}`);
      }
    } finally {
      setBusy(null);
    }
  }

  function remove() {
    if (!current) return;
    const next = convs.filter((c) => c.id !== current.id);
    saveConversations(next);
    setConvs(next);
    setCurrentId(next[0]?.id ?? null);
  }

  return (
    <div class="chat">
      <aside class="conversations" aria-labelledby="conversations-title">
        <h2 id="conversations-title">Conversations</h2>
        <button type="button" onClick={() => startNew(model)} disabled={!!busy}>
          New conversation
        </button>
        <ul class="conv-list">
          {convs.map((c) => (
            <li key={c.id}>
              <button type="button" class="link" aria-current={c.id === currentId ? 'true' : undefined} onClick={() => setCurrentId(c.id)} disabled={!!busy}>
                {c.title}
              </button>
            </li>
          ))}
        </ul>
        <div class="buttons">
          <button type="button" onClick={() => downloadJson('conversations.json', convs)} disabled={convs.length === 0}>
            Export JSON
          </button>
          <button type="button" onClick={remove} disabled={!current || !!busy}>
            Delete conversation
          </button>
        </div>
      </aside>
      <section class="conversation" aria-labelledby="chat-title">
        <h1 id="chat-title">Chat</h1>
        <div class="controls">
          <div class="field">
            <label for="chat-model">Model</label>
            <select
              id="chat-model"
              value={model}
              disabled={!!busy}
              onChange={(e) => {
                const m = e.currentTarget.value;
                if (current) update(current.id, (c) => ({ ...c, model: m }), true);
                else startNew(m);
              }}
            >
              {models.map((m) => (
                <option key={m.id} value={m.id}>
                  {modelLabel(m)}
                </option>
              ))}
              {model && !models.some((m) => m.id === model) && <option value={model}>{model} (not loaded)</option>}
            </select>
          </div>
          <SamplingControls id="chat" value={sampling} onChange={setSampling} />
        </div>
        {modelsError && <p class="error">{modelsError}</p>}
        <ol class="messages" aria-label="Messages">
          {(current?.turns ?? []).map((t, i) => (
            <li key={i} class={`turn ${t.role}`} data-role={t.role}>
              <div class="who">{t.role === 'user' ? 'You' : (t.model ?? 'assistant')}</div>
              <div class="text">{t.content || (busy && i === (current?.turns.length ?? 0) - 1 ? '…' : '')}</div>
              {t.stopped && <div class="note">stopped</div>}
              {t.error && <div class="note error">{t.error}</div>}
            </li>
          ))}
          <li ref={listEnd} class="end" aria-hidden="true" />
        </ol>
        <form class="composer" onSubmit={send}>
          <label for="chat-input">Message</label>
          <textarea
            id="chat-input"
            rows={3}
            value={input}
            onInput={(e) => setInput(e.currentTarget.value)}
            onKeyDown={(e) => {
              if (e.key === 'Enter' && !e.shiftKey) send(e);
            }}
            placeholder="Enter sends, Shift+Enter adds a line"
          />
          <RunStop label="Send" canRun={!!input.trim() && !!model} busy={busy} />
        </form>
        <StatusLine>{status}</StatusLine>
      </section>
    </div>
  );
}
