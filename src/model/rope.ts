// RoPE frequency tables (interleaved pairs), with optional Llama 3.1 frequency scaling.
// Angles in float64 like the reference, then rounded to fp32.

import type { LlamaConfig } from '../core/config.js';

export interface RopeTables {
  cos: Float32Array; // (maxPos, headDim/2)
  sin: Float32Array; // (maxPos, headDim/2)
  maxPos: number;
}

export function ropeFrequencies(c: LlamaConfig): Float64Array {
  const half = c.headDim / 2;
  const f = new Float64Array(half);
  for (let i = 0; i < half; i++) f[i] = 1 / c.ropeTheta ** ((2 * i) / c.headDim);
  const s = c.ropeScaling;
  if (s) {
    // Llama 3.1: keep high frequencies, divide low ones by factor, interpolate in between.
    const lowWavelen = s.originalMaxPos / s.lowFreqFactor;
    const highWavelen = s.originalMaxPos / s.highFreqFactor;
    for (let i = 0; i < half; i++) {
      const wavelen = (2 * Math.PI) / f[i];
      if (wavelen < highWavelen) continue;
      if (wavelen > lowWavelen) f[i] = f[i] / s.factor;
      else {
        const smooth = (s.originalMaxPos / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
        f[i] = (1 - smooth) * (f[i] / s.factor) + smooth * f[i];
      }
    }
  }
  return f;
}

export function ropeTables(c: LlamaConfig, maxPos: number): RopeTables {
  const half = c.headDim / 2;
  const f = ropeFrequencies(c);
  const cos = new Float32Array(maxPos * half);
  const sin = new Float32Array(maxPos * half);
  for (let p = 0; p < maxPos; p++) {
    for (let i = 0; i < half; i++) {
      const a = p * f[i];
      cos[p * half + i] = Math.cos(a);
      sin[p * half + i] = Math.sin(a);
    }
  }
  return { cos, sin, maxPos };
}
