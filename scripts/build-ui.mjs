// Bundle the web UI (ui/: Preact + uPlot, TypeScript/TSX) into dist/ui with esbuild: app.js,
// app.css and index.html. Run by `npm run build` (and so by `npm ci`); the server serves dist/ui
// at /. Everything is bundled: the page loads nothing from anywhere but its own server.
import { copyFileSync, mkdirSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = fileURLToPath(new URL('..', import.meta.url));
const out = `${root}dist/ui`;
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
await build({
  entryPoints: { app: `${root}ui/main.tsx` },
  outdir: out,
  bundle: true,
  format: 'esm',
  target: 'es2022',
  minify: true,
  jsx: 'automatic',
  jsxImportSource: 'preact',
  legalComments: 'linked',
  logLevel: 'warning',
});
copyFileSync(`${root}ui/index.html`, `${out}/index.html`);
