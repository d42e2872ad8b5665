// The web UI's shell: a header with the pages (Chat, Compare, Adapters, Fine-tuning, In the browser)
// and the API key, hash routing (#/chat?model=ID, #/compare, #/adapters, #/finetune, #/local), one
// page at a time.

import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import 'uplot/dist/uPlot.min.css';
import './style.css';
import { apiKey } from './api.js';
import { AdaptersPage } from './adapters.js';
import { ChatPage } from './chat.js';
import { ComparePage } from './compare.js';
import { FinetunePage } from './finetune.js';
import { LocalPage } from './local.js';
import { PAGES, parseHash } from './route.js';

function ApiKey() {
  const [key, setKey] = useState(apiKey.get());
  return (
    <details class="settings">
      <summary>API key</summary>
      <label for="api-key">Bearer key for /v1 (when the server has --api-key)</label>
      <input
        id="api-key"
        type="password"
        autocomplete="off"
        value={key}
        onInput={(e) => {
          const v = e.currentTarget.value;
          setKey(v);
          apiKey.set(v);
        }}
      />
    </details>
  );
}

function App() {
  const [route, setRoute] = useState(parseHash);
  useEffect(() => {
    const on = () => setRoute(parseHash());
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  const title = PAGES.find((p) => p.path === route.page)?.title ?? '';
  useEffect(() => {
    document.title = `${title} · llama-adapter`;
  }, [title]);
  return (
    <>
      <header class="top">
        <span class="brand">llama-adapter</span>
        <nav aria-label="Pages">
          <ul>
            {PAGES.map((p) => (
              <li key={p.path}>
                <a href={`#/${p.path}`} aria-current={p.path === route.page ? 'page' : undefined}>
                  {p.title}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <ApiKey />
      </header>
      <main id="main">
        {route.page === 'chat' && <ChatPage model={route.params.get('model')} />}
        {route.page === 'compare' && <ComparePage />}
        {route.page === 'adapters' && <AdaptersPage />}
        {route.page === 'finetune' && <FinetunePage />}
        {route.page === 'local' && <LocalPage />}
      </main>
    </>
  );
}

render(<App />, document.getElementById('app')!);
