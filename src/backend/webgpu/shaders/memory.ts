// WGSL for the data movement of backend/memory.ts on the device: fill, copy within one buffer,
// gather rows and scatter rows (256 elements per workgroup).

import { entry, shader } from './common.js';

export const FILL = shader(
  ['n: u32', 'value: f32'],
  [['dst', 'f32']],
  `${entry(256)}
  let i = lin * 256u + li;
  if (i < p.n) { dst[p.dst_o + i] = p.value; }
}`,
);

/** Within one buffer (one binding: WebGPU refuses two writable bindings of it): buf[d + i] = buf[s + i]. */
export const COPY = shader(
  ['n: u32', 'd: u32', 's: u32'],
  [['buf', 'f32']],
  `${entry(256)}
  let i = lin * 256u + li;
  if (i < p.n) { buf[p.d + i] = buf[p.s + i]; }
}`,
);

const ROWS = ['n: u32', 'dim: u32'];
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
  dst[p.dst_o + e] = src[p.src_o + u32(idx[p.idx_o + i]) * p.dim + c];
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
  dst[p.dst_o + u32(idx[p.idx_o + i]) * p.dim + c] = src[p.src_o + e];
}`,
);
