// What every WGSL kernel shares: its parameter struct (binding 0, a uniform) and storage buffers
// (bindings 1..n, read_write), the entry point with a linear workgroup id over a 2-D grid (65535
// workgroups per dimension), and the bf16 helpers. A view binds its whole buffer: each buffer X
// has a parameter X_o, where the view starts (in elements), which the queue fills in itself.

/** A kernel's WGSL source, its parameters (name and type 'u' u32, 'i' i32, 'f' f32, in order) and buffer names. */
export interface ShaderSpec {
  code: string;
  params: readonly { name: string; type: string }[];
  buffers: readonly string[];
}

/**
 * params: 'name: u32' | 'name: i32' | 'name: f32' fields of the uniform struct `p` (each buffer's
 * X_o is added); buffers: [name, element type] of the storage buffers; body: WGSL after the header
 * (helpers and `main`).
 */
export function shader(params: readonly string[], buffers: readonly [string, 'f32' | 'u32' | 'i32'][], body: string): ShaderSpec {
  const all = [...params, ...buffers.map(([n]) => `${n}_o: u32`)];
  const fields = all.map((f) => {
    const [name, type] = f.split(':').map((x) => x.trim());
    return { name, type: type[0] };
  });
  if (all.length > 64) throw new Error('a kernel has more parameters than its 256-byte slot holds');
  params = all;
  const code = [
    `struct Params { ${params.join(', ')} }`,
    '@group(0) @binding(0) var<uniform> p: Params;',
    ...buffers.map(([n, t], i) => `@group(0) @binding(${i + 1}) var<storage, read_write> ${n}: array<${t}>;`),
    body,
  ].join('\n');
  return { code, params: fields, buffers: buffers.map(([n]) => n) };
}

/** The entry point for `wg` threads per workgroup; `lin` is the workgroup's linear index, `li` the thread's. */
export function entry(wg: number): string {
  return `@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nw: vec3u, @builtin(local_invocation_index) li: u32) {
  let lin = wid.x + wid.y * nw.x;`;
}

/** The entry of an elementwise kernel: 256 threads a workgroup, `i` the element (threads past p.n return). */
export function elementwise(body: string): string {
  return `${entry(256)}
  let i = lin * 256u + li;
  if (i >= p.n) { return; }
${body}
}`;
}

/** The entry of a kernel with one thread per row: 64 threads a workgroup, `r` the row (threads past p.rows return). */
export function perRow(body: string): string {
  return `${entry(64)}
  let r = lin * 64u + li;
  if (r >= p.rows) { return; }
${body}
}`;
}

/** Round an f32 to bf16 (ties to even; NaN stays a quiet NaN), as bits and as a value. */
export const BF16 = `
fn bf16Bits(u: u32) -> u32 {
  if ((u & 0x7fffffffu) > 0x7f800000u) { return ((u | 0x00400000u) >> 16u); }
  return (u + 0x7fffu + ((u >> 16u) & 1u)) >> 16u;
}
fn roundBf16(x: f32) -> f32 { return bitcast<f32>(bf16Bits(bitcast<u32>(x)) << 16u); }`;

/** Element e of a packed bf16 array (two per u32, the first in the low half) as f32; `name` is the buffer. */
export function bf16At(name: string): string {
  return `fn ${name}Bf16(e: u32) -> f32 { let u = ${name}[e >> 1u]; return bitcast<f32>(select(u << 16u, u & 0xffff0000u, (e & 1u) == 1u)); }`;
}
