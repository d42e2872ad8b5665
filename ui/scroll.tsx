// A labelled region that scrolls sideways when its table is wider than the window (a narrow
// window), and takes keyboard focus so it can be scrolled without a mouse.

import type { ComponentChildren } from 'preact';

export function ScrollRegion({ label, children }: { label: string; children: ComponentChildren }) {
  return (
    // biome-ignore lint/a11y/noNoninteractiveTabindex: a scrolling region must take focus to be scrolled from the keyboard (WCAG 2.1.1, axe scrollable-region-focusable)
    <section class="scroll" aria-label={label} tabIndex={0}>
      {children}
    </section>
  );
}
