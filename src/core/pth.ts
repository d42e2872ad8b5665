// PyTorch `torch.save` files (.pth/.pt/.bin, the zip format of torch >= 1.6), read without running
// any code, and a writer for a flat state dict of tensors. The archive holds `<prefix>/data.pkl`
// (the pickled object), `<prefix>/data/<key>` (each storage's raw little-endian bytes),
// `<prefix>/version` and `<prefix>/byteorder`. data.pkl is run by the restricted VM of pickle.ts
// with only the globals torch.save writes for a state dict (the same set torch.load(weights_only=
// True) accepts for one): `collections.OrderedDict`, `torch._utils._rebuild_tensor_v2` /
// `_rebuild_parameter` and the storage types; any other global is refused by name. A tensor is
// a TorchTensor (dtype, shape, strides, offset into a storage), checked against its storage's
// size when it is built; its values are read on request (tensorF32), CRC-checked.
import { check, LlamaAdapterError } from './errors.js';
import { ByteSource, asBytes } from './fileio.js';
import { writeFileAtomic } from './fs.js';
import { PickleWriter, PyDict, PyGlobal, PyTuple, typeName, unpickle } from './pickle.js';
import type { WritableTensor } from './safetensors.js';
import { bf16ToF32, f16ToF32 } from './weights.js';
import { ZipArchive, zipStored } from './zip.js';

/** Element types of torch storages, named as safetensors names them. */
const STORAGE_TYPES = {
  FloatStorage: ['F32', 4],
  HalfStorage: ['F16', 2],
  BFloat16Storage: ['BF16', 2],
  DoubleStorage: ['F64', 8],
  LongStorage: ['I64', 8],
  IntStorage: ['I32', 4],
  ShortStorage: ['I16', 2],
  CharStorage: ['I8', 1],
  ByteStorage: ['U8', 1],
  BoolStorage: ['BOOL', 1],
} as const;

type StorageType = keyof typeof STORAGE_TYPES;
export type TorchDtype = (typeof STORAGE_TYPES)[StorageType][0];

interface Storage {
  key: string;
  dtype: TorchDtype;
  itemSize: number;
  numel: number;
}

/** A tensor in a torch file: a strided view of one storage. */
export class TorchTensor {
  constructor(
    readonly storage: Storage,
    readonly offset: number, // in elements
    readonly shape: number[],
    readonly stride: number[],
  ) {}
  get dtype(): TorchDtype {
    return this.storage.dtype;
  }
  get numel(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }
}

export interface TorchFile {
  readonly path: string;
  /** The unpickled object: PyDict, PyTuple, arrays, primitives and TorchTensors. */
  readonly root: unknown;
  /** A floating-point tensor's values as float32 (F32, F16, BF16, F64; any strides). */
  tensorF32(t: TorchTensor, name: string): Float32Array;
}

const MAX_DIMS = 16;
const ZIP_MAGIC = 0x04034b50;

/** Read a torch.save file. Anything else, or anything corrupt, is a LlamaAdapterError naming the file. */
export function readTorchFile(path: string): TorchFile {
  const src = new ByteSource(path);
  return parseTorchFile(path, src.bytes(0, src.size));
}

/** parseTorchFile over bytes already in memory (the fuzz tests call it directly). */
export function parseTorchFile(path: string, buf: Uint8Array): TorchFile {
  check(buf.length >= 4, `${path}: file is ${buf.length} bytes, too short for a PyTorch file`);
  const magic = new DataView(buf.buffer, buf.byteOffset, 4).getUint32(0, true);
  if (magic !== ZIP_MAGIC) {
    if (buf[0] === 0x80 && buf[1] <= 5) {
      throw new LlamaAdapterError(
        `${path}: a PyTorch file in the legacy (pre-1.6) format, which is not supported; re-save it in Python with torch.save(torch.load(f, weights_only=True), f)`,
      );
    }
    if (buf.length > 262 && Buffer.from(buf.subarray(257, 262)).toString('latin1') === 'ustar') {
      throw new LlamaAdapterError(`${path}: a PyTorch file in the old tar format, which is not supported; re-save it with a current torch.save`);
    }
    throw new LlamaAdapterError(`${path}: not a PyTorch zip file (torch.save of torch >= 1.6 starts with "PK")`);
  }
  const zip = new ZipArchive(path, buf);
  const pkls = zip.names().filter((n) => n === 'data.pkl' || n.endsWith('/data.pkl'));
  check(pkls.length === 1, `${path}: expected one data.pkl in the archive, found ${pkls.length} (${zip.names().slice(0, 8).join(', ')})`);
  const prefix = pkls[0].slice(0, -'data.pkl'.length);
  if (zip.has(`${prefix}byteorder`)) {
    const order = Buffer.from(zip.read(`${prefix}byteorder`)).toString('latin1');
    check(order === 'little', `${path}: storages are stored ${JSON.stringify(order)}-endian; only little-endian files are supported`);
  }
  const storages = new Map<string, Storage>();
  const persistentLoad = (pid: unknown): Storage => {
    check(pid instanceof PyTuple && pid.items.length === 5, `expected ('storage', type, key, location, numel), got ${typeName(pid)}`);
    const [tag, type, key, location, numel] = (pid as PyTuple).items;
    check(tag === 'storage', `persistent id kind ${JSON.stringify(tag)} is not "storage"`);
    const st = type instanceof PyGlobal ? type.name.slice('torch.'.length) : '';
    check(type instanceof PyGlobal && Object.hasOwn(STORAGE_TYPES, st), `storage type ${typeName(type)} is not a torch storage type`);
    check(typeof key === 'string' && /^[A-Za-z0-9_.-]{1,64}$/.test(key) && !key.includes('..'), `storage key ${JSON.stringify(key)} is not a plain name`);
    check(typeof location === 'string', `storage location ${typeName(location)} is not a string`);
    check(Number.isSafeInteger(numel) && (numel as number) >= 0, `storage size ${JSON.stringify(numel)} is not a count`);
    const [dtype, itemSize] = STORAGE_TYPES[st as StorageType];
    const entry = `${prefix}data/${key}`;
    check(zip.has(entry), `storage "${key}" has no archive entry ${entry}`);
    check(
      zip.size(entry) === (numel as number) * itemSize,
      `storage "${key}" of ${numel} ${dtype} elements needs ${(numel as number) * itemSize} bytes, its entry has ${zip.size(entry)}`,
    );
    const old = storages.get(key as string);
    if (old) {
      check(old.dtype === dtype && old.numel === numel, `storage "${key}" is used with two types or sizes`);
      return old;
    }
    const s: Storage = { key: key as string, dtype, itemSize, numel: numel as number };
    storages.set(s.key, s);
    return s;
  };
  const rebuildTensor = (args: unknown[]): TorchTensor => {
    check(args.length >= 6 && args.length <= 7, `takes 6 or 7 arguments, got ${args.length}`);
    const [storage, offset, size, stride] = args;
    check(
      storage instanceof Object && storages.has((storage as Storage).key) && storages.get((storage as Storage).key) === storage,
      'first argument is not a storage',
    );
    const s = storage as Storage;
    check(Number.isSafeInteger(offset) && (offset as number) >= 0, `storage offset ${JSON.stringify(offset)} is not a count`);
    const dims = intTuple(size, 'size');
    const strides = intTuple(stride, 'stride');
    check(dims.length === strides.length, `size has ${dims.length} dimensions, stride ${strides.length}`);
    check(dims.length <= MAX_DIMS, `tensor has ${dims.length} dimensions (at most ${MAX_DIMS})`);
    let numel = 1;
    let last = offset as number;
    for (let i = 0; i < dims.length; i++) {
      numel *= dims[i];
      last += Math.max(0, dims[i] - 1) * strides[i];
    }
    check(numel <= s.numel, `tensor of shape [${dims}] has ${numel} elements, more than its storage's ${s.numel}`);
    check(
      numel === 0 || last < s.numel,
      `tensor of shape [${dims}] stride [${strides}] at offset ${offset} reaches element ${last}, past its storage's ${s.numel}`,
    );
    return new TorchTensor(s, offset as number, dims, strides);
  };
  const root = unpickle(zip.read(pkls[0]), {
    what: `${path}: ${pkls[0]}`,
    persistentLoad,
    globals: {
      'collections.OrderedDict': (args) => {
        check(args.length === 0, 'OrderedDict(...) with arguments is not supported');
        return new PyDict();
      },
      'torch._utils._rebuild_tensor_v2': rebuildTensor,
      'torch._utils._rebuild_parameter': (args) => {
        check(args.length === 3 && args[0] instanceof TorchTensor, 'expects (tensor, requires_grad, hooks)');
        return args[0];
      },
      ...Object.fromEntries(Object.keys(STORAGE_TYPES).map((t) => [`torch.${t}`, null])),
    },
  });
  const cache = new Map<string, Uint8Array>();
  return {
    path,
    root,
    tensorF32(t: TorchTensor, name: string): Float32Array {
      const s = t.storage;
      let raw = cache.get(s.key);
      if (!raw) {
        raw = zip.read(`${prefix}data/${s.key}`);
        cache.set(s.key, raw);
      }
      const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
      const read: (i: number) => number =
        s.dtype === 'F32'
          ? (i) => dv.getFloat32(4 * i, true)
          : s.dtype === 'F64'
            ? (i) => dv.getFloat64(8 * i, true)
            : s.dtype === 'BF16' || s.dtype === 'F16'
              ? (i) => dv.getUint16(2 * i, true)
              : () => {
                  throw new LlamaAdapterError(
                    `${path}: tensor "${name}" has dtype ${s.dtype}, which cannot be read as floating point (supported: F32, F16, BF16, F64)`,
                  );
                };
      const n = t.numel;
      const out = s.dtype === 'BF16' || s.dtype === 'F16' ? new Uint16Array(n) : new Float32Array(n);
      // row-major walk over the strided view
      const idx = new Array<number>(t.shape.length).fill(0);
      let at = t.offset;
      for (let i = 0; i < n; i++) {
        out[i] = read(at);
        for (let d = t.shape.length - 1; d >= 0; d--) {
          at += t.stride[d];
          if (++idx[d] < t.shape[d]) break;
          at -= t.stride[d] * t.shape[d];
          idx[d] = 0;
        }
      }
      if (out instanceof Float32Array) return out;
      return s.dtype === 'BF16' ? bf16ToF32(out) : f16ToF32(out);
    },
  };
}

function intTuple(v: unknown, what: string): number[] {
  check(v instanceof PyTuple, `${what} is ${typeName(v)}, not a tuple`);
  const items = (v as PyTuple).items;
  check(
    items.every((x) => Number.isSafeInteger(x) && (x as number) >= 0 && (x as number) < 2 ** 40),
    () => `${what} (${items.map((x) => String(x)).join(', ')}) is not a tuple of counts`,
  );
  return items as number[];
}

const WRITE_STORAGE: Record<WritableTensor['dtype'], StorageType> = { F32: 'FloatStorage', F16: 'HalfStorage', BF16: 'BFloat16Storage', I32: 'IntStorage' };

/**
 * Write a flat state dict `{name: tensor}` as torch.save does (zip, protocol-2 pickle, one
 * storage per tensor, contiguous), atomically. torch.load(path, weights_only=True) reads it.
 */
export function writeTorchFile(path: string, tensors: readonly WritableTensor[]): void {
  const w = new PickleWriter().emptyDict().mark();
  tensors.forEach((t, key) => {
    const strides = t.shape.map((_, i) => t.shape.slice(i + 1).reduce((a, b) => a * b, 1));
    w.str(t.name).global('torch._utils', '_rebuild_tensor_v2').mark();
    w.mark().str('storage').global('torch', WRITE_STORAGE[t.dtype]).str(String(key)).str('cpu').int(t.data.length).tuple().binPersId();
    w.int(0).mark();
    for (const d of t.shape) w.int(d);
    w.tuple().mark();
    for (const s of strides) w.int(s);
    w.tuple().bool(false).global('collections', 'OrderedDict').emptyTuple().reduce().tuple().reduce();
  });
  w.setItems().stop();
  const entries = [
    { name: 'archive/data.pkl', data: w.bytes() },
    { name: 'archive/byteorder', data: Buffer.from('little') },
    ...tensors.map((t, key) => ({ name: `archive/data/${key}`, data: asBytes(t.data) })),
    { name: 'archive/version', data: Buffer.from('3\n') },
  ];
  writeFileAtomic(path, zipStored(entries));
}
