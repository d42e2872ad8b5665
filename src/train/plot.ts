// A loss-curve picture as a small self-contained SVG (train loss per step, validation loss per
// epoch). Hand-written: an SVG polyline needs no plotting library.

import { writeFileAtomic } from '../core/fs.js';

export interface Point {
  step: number;
  loss: number;
}

export interface Series {
  name: string;
  color: string;
  points: readonly Point[];
}

/** Write an SVG line chart of one or more loss series (atomic write). */
export function writeSvgChart(path: string, title: string, series: readonly Series[]): void {
  const W = 720,
    H = 400,
    L = 60,
    R = 20,
    T = 40,
    B = 50;
  const all = series.flatMap((s) => s.points).filter((p) => Number.isFinite(p.loss));
  const xMax = Math.max(1, ...all.map((p) => p.step));
  let yMin = Math.min(...all.map((p) => p.loss));
  let yMax = Math.max(...all.map((p) => p.loss));
  if (!all.length) yMin = yMax = 0;
  if (yMax - yMin < 1e-6) {
    yMax += 0.5;
    yMin -= 0.5;
  }
  const x = (s: number): number => L + ((W - L - R) * s) / xMax;
  const y = (v: number): number => T + ((H - T - B) * (yMax - v)) / (yMax - yMin);
  const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15">${esc(title)}</text>`,
    `<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="black"/>`,
    `<line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="black"/>`,
    `<text x="${(L + W - R) / 2}" y="${H - 12}" text-anchor="middle">optimizer step</text>`,
    `<text x="16" y="${(T + H - B) / 2}" text-anchor="middle" transform="rotate(-90 16 ${(T + H - B) / 2})">loss</text>`,
  ];
  for (let i = 0; i <= 5; i++) {
    const v = yMin + ((yMax - yMin) * i) / 5;
    parts.push(`<line x1="${L - 4}" y1="${y(v).toFixed(1)}" x2="${W - R}" y2="${y(v).toFixed(1)}" stroke="#ddd"/>`);
    parts.push(`<text x="${L - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end">${v.toFixed(3)}</text>`);
    const s = Math.round((xMax * i) / 5);
    parts.push(`<text x="${x(s).toFixed(1)}" y="${H - B + 16}" text-anchor="middle">${s}</text>`);
  }
  series.forEach((s, i) => {
    const pts = s.points
      .filter((p) => Number.isFinite(p.loss))
      .map((p) => `${x(p.step).toFixed(1)},${y(p.loss).toFixed(1)}`)
      .join(' ');
    if (pts) parts.push(`<polyline fill="none" stroke="${s.color}" stroke-width="1.5" points="${pts}"/>`);
    if (s.points.length <= 50)
      for (const p of s.points) parts.push(`<circle cx="${x(p.step).toFixed(1)}" cy="${y(p.loss).toFixed(1)}" r="2.5" fill="${s.color}"/>`);
    parts.push(`<rect x="${W - R - 170}" y="${T + 4 + i * 18}" width="12" height="3" fill="${s.color}"/>`);
    parts.push(`<text x="${W - R - 152}" y="${T + 10 + i * 18}">${esc(s.name)}</text>`);
  });
  parts.push('</svg>\n');
  writeFileAtomic(path, parts.join('\n'));
}

export function writeLossPlot(path: string, train: readonly Point[], val: readonly Point[]): void {
  writeSvgChart(path, 'LLaMA-Adapter fine-tuning', [
    { name: 'train loss', color: '#1f77b4', points: train },
    { name: 'validation loss', color: '#d62728', points: val },
  ]);
}
