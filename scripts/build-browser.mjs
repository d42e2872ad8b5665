// Bundle the library for web pages (src/browser.ts) with esbuild into dist/ui/lib/llama-adapter.js,
// an ES module the server serves beside the web UI (run after build-ui.mjs, which clears dist/ui).
// platform 'browser' with no Node built-ins allowed: an import of `node:*` (or of a module that
// reaches one) fails the build, so nothing in the page's path can call a Node API. The optional
// Dawn package (`webgpu`) is only ever imported by a computed name, which esbuild leaves alone.
import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = fileURLToPath(new URL('..', import.meta.url));
const out = `${root}dist/ui/lib`;
mkdirSync(out, { recursive: true });
await build({
  entryPoints: { 'llama-adapter': `${root}src/browser.ts` },
  outdir: out,
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  minify: true,
  sourcemap: 'linked',
  legalComments: 'linked',
  logLevel: 'warning',
  plugins: [
    {
      name: 'no-node',
      setup(b) {
        b.onResolve({ filter: /^node:|^(fs|path|os|crypto|module|url|worker_threads|child_process)$/ }, (a) => ({
          errors: [{ text: `${a.path} is a Node built-in, imported by ${a.importer}: the browser bundle must not reach Node APIs` }],
        }));
      },
    },
  ],
});
