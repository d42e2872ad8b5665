// The WebGPU backend's memory and command queue (the Memory of backend/memory.ts on a device).
//
// Mirrors: each host ArrayBuffer that a kernel touches gets one device buffer of its size (views
// are offsets into it). A mirror nobody has written on the device keeps a copy of what was last
// uploaded and is compared with the host before each use (host writes are seen); once a kernel
// writes it, the device copy is the truth until `upload()` says otherwise, and `sync()` brings it
// back. Frozen weights are uploaded once per view (a weight is often a view of a whole file).
//
// Commands: kernels are recorded into one command encoder and submitted only at a sync point, when
// data must be uploaded over something already recorded, or every `FLUSH_EVERY` dispatches. Each
// dispatch's parameters take the next 256-byte slot of one uniform buffer, and bind groups are
// cached by (slot, buffers): a decode loop records the same sequence every step, so it re-binds
// nothing. (Not a dynamic offset: with one, SwiftShader under Dawn crashed in mapAsync.)

import { LlamaAdapterError } from '../../core/errors.js';
import type { Buf, Memory } from '../memory.js';
import type { ShaderSpec } from './shaders/common.js';
import { COPY, FILL, GATHER, SCATTER } from './shaders/memory.js';

// GPUBufferUsage / GPUMapMode / GPUShaderStage values (numbers, so that Node needs no globals)
const MAP_READ = 1,
  COPY_SRC = 4,
  COPY_DST = 8,
  UNIFORM = 64,
  STORAGE = 128;
const MAP_MODE_READ = 1;
const STAGE_COMPUTE = 4;

const SLOT = 256; // bytes of parameters per dispatch (minUniformBufferOffsetAlignment)
const SLOTS = 2048; // dispatches per submission at most
const FLUSH_EVERY = 512; // submit after this many dispatches, so the device starts working
const MAX_GRID = 65535; // workgroups per dimension

/** A buffer as a kernel binds it: the device buffer and where the view starts, in its elements. */
export interface Binding {
  buf: GPUBuffer;
  id: number; // for the bind-group cache
  off: number; // offset in elements of the view's type (u16 elements for a Uint16Array)
}

interface Mirror {
  buf: GPUBuffer;
  id: number;
  bytes: number; // padded to 4
  written: boolean; // a kernel has written it: the device copy is the truth
  stale: boolean; // the host wrote it after that (upload() said so): upload before the next use
  shadow: Uint8Array | null; // what was last uploaded, while !written
}

/** A compiled kernel: its pipeline, bind-group layout, parameters and buffer names (ShaderSpec's). */
export interface Kernel {
  pipeline: GPUComputePipeline;
  layout: GPUBindGroupLayout;
  spec: ShaderSpec;
  name: string;
}

let nextId = 1;
/** The placeholder for an absent optional buffer (dispatch binds a small buffer of its own per binding). */
const NONE: Binding = { buf: null as unknown as GPUBuffer, id: -1, off: 0 };

export class DeviceQueue implements Memory {
  readonly device = true;
  private mirrors = new WeakMap<ArrayBufferLike, Mirror>();
  private consts = new WeakMap<ArrayBufferLike, Map<string, Binding>>();
  private readonly freed = new FinalizationRegistry<GPUBuffer>((b) => b.destroy());
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private recorded = 0; // commands in the open encoder
  private readonly params: GPUBuffer;
  private readonly paramHost = new ArrayBuffer(SLOT * SLOTS);
  private readonly pu32 = new Uint32Array(this.paramHost);
  private readonly pi32 = new Int32Array(this.paramHost);
  private readonly pf32 = new Float32Array(this.paramHost);
  private slot = 0;
  private bindGroups = new Map<string, GPUBindGroup>();
  private layouts = new Map<number, { bgl: GPUBindGroupLayout; pl: GPUPipelineLayout }>();
  private scratchBufs = new Map<string, Binding & { bytes: number }>();
  private errors: string[] = [];
  private readonly dummies: Binding[] = []; // per binding index: absent optional buffers (never aliased)

  constructor(readonly gpu: GPUDevice) {
    this.params = gpu.createBuffer({ size: SLOT * SLOTS, usage: UNIFORM | COPY_DST });
    gpu.onuncapturederror = (e: GPUUncapturedErrorEvent) => {
      if (this.errors.length < 5) this.errors.push(e.error.message);
    };
  }

  // ------------------------------------------------------------------ kernels

  /** Compile a kernel from WGSL: binding 0 its parameter struct, bindings 1..nBuffers storage buffers. */
  kernel(name: string, spec: ShaderSpec): Kernel {
    const { code } = spec;
    const nBuffers = spec.buffers.length;
    let l = this.layouts.get(nBuffers);
    if (!l) {
      const entries: GPUBindGroupLayoutEntry[] = [{ binding: 0, visibility: STAGE_COMPUTE, buffer: { type: 'uniform' } }];
      for (let i = 1; i <= nBuffers; i++) entries.push({ binding: i, visibility: STAGE_COMPUTE, buffer: { type: 'storage' } });
      const bgl = this.gpu.createBindGroupLayout({ entries });
      l = { bgl, pl: this.gpu.createPipelineLayout({ bindGroupLayouts: [bgl] }) };
      this.layouts.set(nBuffers, l);
    }
    const module = this.gpu.createShaderModule({ code, label: name });
    const pipeline = this.gpu.createComputePipeline({ layout: l.pl, compute: { module, entryPoint: 'main' }, label: name });
    return { pipeline, layout: l.bgl, spec, name };
  }

  /** The (x, y) workgroup grid for n workgroups (the shader linearises it as wid.x + wid.y * nw.x). */
  static grid(n: number): [number, number] {
    if (n <= MAX_GRID) return [Math.max(1, n), 1];
    return [MAX_GRID, Math.ceil(n / MAX_GRID)];
  }

  /**
   * Record one dispatch of `k` over `groups` workgroups (x, y), with its parameters and buffers by
   * name (each buffer's X_o parameter is its binding's offset; a missing name is an error here).
   */
  dispatch(k: Kernel, params: Readonly<Record<string, number>>, named: Readonly<Record<string, Binding>>, groups: [number, number]): void {
    const bufs = k.spec.buffers.map((n, i) => {
      const b = named[n];
      if (!b) throw new Error(`webgpu kernel ${k.name}: no buffer ${n}`);
      return b === NONE ? this.dummy(i) : b;
    });
    // WebGPU refuses two writable bindings of one buffer in a dispatch: kernels with in-place
    // forms (crossEntropy's dlogits = logits) bind the buffer once; anything else is refused here
    for (let i = 1; i < bufs.length; i++)
      for (let j = 0; j < i; j++)
        if (bufs[i].buf === bufs[j].buf) throw new RangeError(`webgpu ${k.name}: two arguments share one buffer (arguments may not alias here)`);
    if (this.slot === SLOTS) this.flush();
    const base = (this.slot * SLOT) / 4;
    k.spec.params.forEach(({ name, type }, i) => {
      const v = name.endsWith('_o') && named[name.slice(0, -2)] ? named[name.slice(0, -2)].off : params[name];
      if (v === undefined) throw new Error(`webgpu kernel ${k.name}: no parameter ${name}`);
      if (type === 'f') this.pf32[base + i] = v;
      else if (type === 'i') this.pi32[base + i] = v;
      else this.pu32[base + i] = v;
    });
    const offset = this.slot * SLOT;
    this.slot++;
    let key = `${bufs.length}:${offset}`;
    for (const b of bufs) key += `:${b.id}`;
    let bg = this.bindGroups.get(key);
    if (!bg) {
      if (this.bindGroups.size > 8192) this.bindGroups.clear();
      const entries: GPUBindGroupEntry[] = [{ binding: 0, resource: { buffer: this.params, offset, size: SLOT } }];
      bufs.forEach((b, i) => entries.push({ binding: i + 1, resource: { buffer: b.buf } }));
      bg = this.gpu.createBindGroup({ layout: k.layout, entries });
      this.bindGroups.set(key, bg);
    }
    if (!this.pass) {
      this.encoder ??= this.gpu.createCommandEncoder();
      this.pass = this.encoder.beginComputePass();
    }
    this.pass.setPipeline(k.pipeline);
    this.pass.setBindGroup(0, bg);
    this.pass.dispatchWorkgroups(groups[0], groups[1]);
    this.recorded++;
    if (this.recorded >= FLUSH_EVERY) this.flush();
  }

  /** Submit everything recorded. */
  flush(): void {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
    if (this.encoder) {
      if (this.slot > 0) this.gpu.queue.writeBuffer(this.params, 0, this.paramHost, 0, this.slot * SLOT);
      this.gpu.queue.submit([this.encoder.finish()]);
      this.encoder = null;
    }
    this.slot = 0;
    this.recorded = 0;
  }

  private copyEncoder(): GPUCommandEncoder {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
    this.encoder ??= this.gpu.createCommandEncoder();
    this.recorded++;
    return this.encoder;
  }

  // ------------------------------------------------------------------ buffers

  /** An array a kernel reads (or, with write, writes): its binding, uploaded first when the host copy is newer. */
  use(a: Buf, write = false): Binding {
    const c = this.consts.get(a.buffer)?.get(`${a.byteOffset}:${a.byteLength}`);
    if (c) {
      if (write) throw new LlamaAdapterError('webgpu: a kernel would write a frozen (constant) array');
      return c;
    }
    const ab = a.buffer;
    let m = this.mirrors.get(ab);
    if (!m) {
      const bytes = Math.max(4, Math.ceil(ab.byteLength / 4) * 4);
      const buf = this.gpu.createBuffer({ size: bytes, usage: STORAGE | COPY_SRC | COPY_DST });
      m = { buf, id: nextId++, bytes, written: false, stale: false, shadow: null };
      this.mirrors.set(ab, m);
      this.freed.register(ab, buf);
      this.send(m, ab, false);
    } else if (m.stale) this.send(m, ab, true);
    else if (!m.written && m.shadow && !same(m.shadow, ab)) this.send(m, ab, true);
    if (write) {
      m.written = true;
      m.shadow = null;
    }
    return { buf: m.buf, id: m.id, off: a.byteOffset / a.BYTES_PER_ELEMENT };
  }

  /** A frozen array (a weight), uploaded once per view into a buffer of its own. */
  weight(a: Buf): Binding {
    const key = `${a.byteOffset}:${a.byteLength}`;
    let per = this.consts.get(a.buffer);
    const hit = per?.get(key);
    if (hit) return hit;
    const bytes = Math.max(4, Math.ceil(a.byteLength / 4) * 4);
    const buf = this.gpu.createBuffer({ size: bytes, usage: STORAGE | COPY_SRC | COPY_DST });
    const src = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
    this.writePadded(buf, src, bytes);
    const b = { buf, id: nextId++, off: 0 };
    if (!per) {
      per = new Map();
      this.consts.set(a.buffer, per);
      this.freed.register(a.buffer, buf);
    }
    per.set(key, b);
    return b;
  }

  /** A buffer of the backend's own (scratch between kernels), grow-only, by name. */
  scratch(name: string, floats: number): Binding {
    const bytes = Math.max(16, floats * 4);
    const s = this.scratchBufs.get(name);
    if (s && s.bytes >= bytes) return s;
    this.flush(); // the old buffer may still be used by recorded commands; they keep it alive
    const b = { buf: this.gpu.createBuffer({ size: bytes, usage: STORAGE | COPY_SRC | COPY_DST }), id: nextId++, off: 0, bytes };
    this.scratchBufs.set(name, b);
    return b;
  }

  /** A binding for an absent optional buffer (the kernel's flag says not to touch it). */
  none(): Binding {
    return NONE;
  }

  private dummy(i: number): Binding {
    this.dummies[i] ??= { buf: this.gpu.createBuffer({ size: 16, usage: STORAGE | COPY_SRC | COPY_DST }), id: nextId++, off: 0 };
    return this.dummies[i];
  }

  private send(m: Mirror, ab: ArrayBufferLike, existing: boolean): void {
    // a recorded command may read the old contents: submit it first (queue order keeps it right)
    if (existing && this.recorded > 0) this.flush();
    const src = new Uint8Array(ab);
    this.writePadded(m.buf, src, m.bytes);
    m.stale = false;
    if (!m.written) m.shadow = src.slice();
  }

  private writePadded(buf: GPUBuffer, src: Uint8Array, bytes: number): void {
    if (src.byteLength === bytes && src.byteOffset % 4 === 0) {
      this.gpu.queue.writeBuffer(buf, 0, src.buffer, src.byteOffset, bytes);
      return;
    }
    const p = new Uint8Array(bytes);
    p.set(src);
    this.gpu.queue.writeBuffer(buf, 0, p.buffer, 0, bytes);
  }

  // ------------------------------------------------------------------ Memory

  upload(...a: Buf[]): void {
    for (const x of a) {
      const m = this.mirrors.get(x.buffer);
      if (m) m.stale = true;
    }
  }

  constant(...a: Buf[]): void {
    for (const x of a) this.weight(x);
  }

  async sync(...a: Buf[]): Promise<void> {
    const todo: { x: Buf; m: Mirror; start: number; len: number; staging: GPUBuffer }[] = [];
    for (const x of a) {
      const m = this.mirrors.get(x.buffer);
      if (!m?.written || m.stale) continue;
      const start = Math.floor(x.byteOffset / 4) * 4;
      const len = Math.ceil((x.byteOffset + x.byteLength) / 4) * 4 - start;
      if (len === 0) continue;
      todo.push({ x, m, start, len, staging: this.gpu.createBuffer({ size: len, usage: MAP_READ | COPY_DST }) });
    }
    if (todo.length) {
      const enc = this.copyEncoder();
      for (const t of todo) enc.copyBufferToBuffer(t.m.buf, t.start, t.staging, 0, t.len);
    }
    this.flush();
    await Promise.all(todo.map((t) => t.staging.mapAsync(MAP_MODE_READ)));
    for (const t of todo) {
      const got = new Uint8Array(t.staging.getMappedRange());
      const ab = t.x.buffer;
      // the padding past an odd-length buffer's end is not the host's
      const n = Math.min(t.len, ab.byteLength - t.start);
      new Uint8Array(ab, t.start, n).set(got.subarray(0, n));
      t.staging.unmap();
      t.staging.destroy();
    }
    this.raise();
  }

  /** Throw the first device error seen (a shader or validation error), naming it. */
  raise(): void {
    if (this.errors.length) {
      const e = this.errors.splice(0);
      throw new LlamaAdapterError(`webgpu device error: ${e.join('; ')}`);
    }
  }

  /** Wait for everything submitted (and surface device errors). */
  async finish(): Promise<void> {
    this.flush();
    await this.gpu.queue.onSubmittedWorkDone();
    this.raise();
  }

  // ------------------------------------------------------------------ data movement (Memory)

  private memKernels: { fill: Kernel; copy: Kernel; gather: Kernel; scatter: Kernel } | null = null;
  private mem(): { fill: Kernel; copy: Kernel; gather: Kernel; scatter: Kernel } {
    this.memKernels ??= {
      fill: this.kernel('fill', FILL),
      copy: this.kernel('copy', COPY),
      gather: this.kernel('gather', GATHER),
      scatter: this.kernel('scatter', SCATTER),
    };
    return this.memKernels;
  }

  copy(dst: Float32Array, dOff: number, src: Float32Array, sOff: number, n: number): void {
    if (n <= 0) return;
    checkRange('copy: source', src, sOff + n);
    checkRange('copy: destination', dst, dOff + n);
    const s = this.use(src),
      d = this.use(dst, true);
    if (s.buf === d.buf) {
      // one buffer cannot be both ends of a buffer copy: copy by a shader (the ranges must not overlap)
      if (s.off + sOff < d.off + dOff + n && d.off + dOff < s.off + sOff + n) throw new RangeError('webgpu copy: overlapping ranges of one buffer');
      this.dispatch(this.mem().copy, { n, d: d.off + dOff, s: s.off + sOff }, { buf: d }, DeviceQueue.grid(Math.ceil(n / 256)));
      return;
    }
    this.copyEncoder().copyBufferToBuffer(s.buf, (s.off + sOff) * 4, d.buf, (d.off + dOff) * 4, n * 4);
  }

  fill(dst: Float32Array, value: number, off: number, n: number): void {
    if (n <= 0) return;
    checkRange('fill', dst, off + n);
    const d = this.use(dst, true);
    if (value === 0 && !Object.is(value, -0)) {
      this.copyEncoder().clearBuffer(d.buf, (d.off + off) * 4, n * 4);
      return;
    }
    this.dispatch(this.mem().fill, { n, value }, { dst: at(d, off) }, DeviceQueue.grid(Math.ceil(n / 256)));
  }

  gather(dst: Float32Array, src: Float32Array, idx: Int32Array, n: number, dim: number): void {
    if (n <= 0 || dim <= 0) return;
    checkRange('gather: rows', idx, n);
    checkRange('gather: destination', dst, n * dim);
    for (let i = 0; i < n; i++) checkRow('gather', idx[i], src, dim);
    const s = this.use(src),
      r = this.use(idx),
      d = this.use(dst, true);
    this.dispatch(this.mem().gather, { n, dim }, { dst: d, src: s, idx: r }, DeviceQueue.grid(Math.ceil((n * dim) / 256)));
  }

  scatter(dst: Float32Array, src: Float32Array, idx: Int32Array, n: number, dim: number): void {
    if (n <= 0 || dim <= 0) return;
    checkRange('scatter: rows', idx, n);
    checkRange('scatter: source', src, n * dim);
    for (let i = 0; i < n; i++) checkRow('scatter', idx[i], dst, dim);
    const s = this.use(src),
      r = this.use(idx),
      d = this.use(dst, true);
    this.dispatch(this.mem().scatter, { n, dim }, { dst: d, src: s, idx: r }, DeviceQueue.grid(Math.ceil((n * dim) / 256)));
  }
}

/** The binding moved on by `elements`. */
function at(b: Binding, elements: number): Binding {
  return { ...b, off: b.off + elements };
}

/** Whether the host bytes of ab equal the shadow copy (compared as 32-bit words where possible). */
function same(shadow: Uint8Array, ab: ArrayBufferLike): boolean {
  if (shadow.byteLength !== ab.byteLength) return false;
  const n4 = ab.byteLength >> 2;
  const a = new Int32Array(ab, 0, n4),
    b = new Int32Array(shadow.buffer, shadow.byteOffset, n4);
  for (let i = 0; i < n4; i++) if (a[i] !== b[i]) return false;
  const u = new Uint8Array(ab);
  for (let i = n4 * 4; i < ab.byteLength; i++) if (u[i] !== shadow[i]) return false;
  return true;
}

function checkRow(what: string, row: number, a: Float32Array, dim: number): void {
  if (!(row >= 0 && (row + 1) * dim <= a.length)) throw new RangeError(`webgpu ${what}: row ${row} is outside the ${a.length / dim} rows`);
}

function checkRange(what: string, a: Buf, need: number): void {
  if (!(need <= a.length) || need < 0) throw new RangeError(`webgpu ${what}: ${a.length} elements, ${need} needed`);
}
