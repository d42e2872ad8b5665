// WGSL for the data movement of backend/memory.ts on the device: fill, copy within one buffer,
// gather rows and scatter rows (256 elements per workgroup).

import { entry, shader } from './common.js';

export const FILL = shader(
  ['o: u32', 'n: u32', 'value: f32'],
  [['dst', 'f32']],
  `${entry(256)}
  let i = lin * 256u + li;
  if (i < p.n) { dst[p.o + i] = p.value; }
}`,
);

export const COPY = shader(
  ['d: u32', 's: u32', 'n: u32'],
  [
    ['dst', 'f32'],
    ['src', 'f32'],
  ],
  `${entry(256)}
  let i = lin * 256u + li;
  if (i < p.n) { dst[p.d + i] = src[p.s + i]; }
}`,
);

const ROWS = ['d: u32', 's: u32', 'r: u32', 'n: u32', 'dim: u32', 'pad: u32'];
const ROW_BUFS: [string, 'f32' | 'i32'][] = [
  ['dst', 'f32'],
  ['src', 'f32'],
  ['idx', 'i32'],
];

/** dst (n, dim) = rows idx[i] of src. */
export const GATHER = shader(
  ROWS,
  ROW_BUFS,
  `${entry(256)}
  let e = lin * 256u + li;
  if (e >= p.n * p.dim) { return; }
  let i = e / p.dim;
  let c = e % p.dim;
  dst[p.d + e] = src[p.s + u32(idx[p.r + i]) * p.dim + c];
}`,
);

/** rows idx[i] of dst = src (n, dim). */
export const SCATTER = shader(
  ROWS,
  ROW_BUFS,
  `${entry(256)}
  let e = lin * 256u + li;
  if (e >= p.n * p.dim) { return; }
  let i = e / p.dim;
  let c = e % p.dim;
  dst[p.d + u32(idx[p.r + i]) * p.dim + c] = src[p.s + e];
}`,
);
