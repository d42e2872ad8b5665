// Debian's Chromium for the browser tests (playwright-core drives it; `npx playwright install`
// cannot download here): headless, a fresh profile, no background traffic; extra flags per test
// (the UI tests turn the GPU off, the page test turns WebGPU on over SwiftShader).

import * as fs from 'node:fs';
import assert from 'node:assert/strict';
import { type BrowserContext, chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

export async function launchChromium(profile: string, extraArgs: readonly string[]): Promise<BrowserContext> {
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} not found: run scripts/setup.sh (installs Debian's chromium) or set CHROMIUM`);
  return chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 900 },
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      ...extraArgs,
    ],
  });
}
