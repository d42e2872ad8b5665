// WGSL for the data movement of backend/memory.ts on the device: fill, copy within one buffer,
// gather rows and scatter rows (256 elements per workgroup).

import { elementwise, entry, shader, type ShaderSpec } from './common.js';

export const FILL = shader(['n: u32', 'value: f32'], [['dst', 'f32']], elementwise(`  dst[p.dst_o + i] = p.value;`));

/** Within one buffer (one binding: WebGPU refuses two writable bindings of it): buf[d + i] = buf[s + i]. */
export const COPY = shader(['n: u32', 'd: u32', 's: u32'], [['buf', 'f32']], elementwise(`  buf[p.d + i] = buf[p.s + i];`));

/** Rows of `src` to rows of `dst`: gather, dst (n, dim) = rows idx[i] of src; scatter, rows idx[i] of dst = src (n, dim). */
function rowMove(scatter: boolean): ShaderSpec {
  return shader(
    ['n: u32', 'dim: u32'],
    [
      ['dst', 'f32'],
      ['src', 'f32'],
      ['idx', 'i32'],
    ],
    `${entry(256)}
  let e = lin * 256u + li;
  if (e >= p.n * p.dim) { return; }
  let row = u32(idx[p.idx_o + e / p.dim]) * p.dim + e % p.dim;
  ${scatter ? 'dst[p.dst_o + row] = src[p.src_o + e];' : 'dst[p.dst_o + e] = src[p.src_o + row];'}
}`,
  );
}

export const GATHER = rowMove(false);
export const SCATTER = rowMove(true);
