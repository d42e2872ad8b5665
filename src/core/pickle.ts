// A restricted pickle VM and a small pickle writer. The VM runs the opcodes of protocols 0-4 that
// build plain data (None, bools, ints, floats, str, bytes, tuples, lists, dicts, the memo, marks)
// and never imports or calls anything by itself: a GLOBAL names an entry of the caller's allowlist
// (what torch.load(weights_only=True) allows for a state dict) or the load stops with "refusing to
// run pickle global MODULE.NAME"; REDUCE calls only those entries; persistent ids go to the
// caller. Every length, index and mark is checked against the data, so a corrupt pickle is an
// error naming the byte offset, never a crash; it runs in time linear in its length (each opcode
// consumes at least one byte and copies nothing).
import { LlamaAdapterError } from './errors.js';

/** A Python tuple (lists are JS arrays). */
export class PyTuple {
  constructor(readonly items: unknown[]) {}
}

/** A Python dict or collections.OrderedDict, in insertion order; `attrs` holds state set by BUILD (OrderedDict._metadata). */
export class PyDict {
  readonly map = new Map<unknown, unknown>();
  readonly attrs = new Map<string, unknown>();
}

/** A global the allowlist resolved: a callable (REDUCE calls it) or a marker value (storage types). */
export class PyGlobal {
  constructor(
    readonly name: string, // 'module.qualname'
    readonly call: ((args: unknown[]) => unknown) | null,
  ) {}
}

export interface UnpickleOptions {
  /** What the allowed globals are: 'module.name' -> a callable on REDUCE's argument tuple, or null for a marker. */
  globals: Readonly<Record<string, ((args: unknown[]) => unknown) | null>>;
  /** Resolve a persistent id (BINPERSID / PERSID); absent: persistent ids are refused. */
  persistentLoad?: (pid: unknown) => unknown;
  /** Names the source in errors. */
  what: string;
}

/** Unpickle `data` under `o`'s allowlist. Throws a LlamaAdapterError naming `o.what` and the byte offset. */
export function unpickle(data: Uint8Array, o: UnpickleOptions): unknown {
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const latin1 = new TextDecoder('latin1');
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  const stack: unknown[] = [];
  const marks: number[] = [];
  const memo = new Map<number, unknown>();
  let p = 0;
  let at = 0; // offset of the current opcode
  const fail = (msg: string): never => {
    throw new LlamaAdapterError(`${o.what}: pickle byte ${at}: ${msg}`);
  };
  const need = (n: number): number => {
    if (n < 0 || p + n > data.length) fail(`needs ${n} more bytes, the pickle ends at byte ${data.length} (truncated?)`);
    const q = p;
    p += n;
    return q;
  };
  const u8 = (): number => data[need(1)];
  const u16 = (): number => dv.getUint16(need(2), true);
  const u32 = (): number => dv.getUint32(need(4), true);
  const u64 = (): number => {
    const v = dv.getBigUint64(need(8), true);
    if (v > BigInt(data.length)) fail(`length ${v} is larger than the pickle`);
    return Number(v);
  };
  const bytes = (n: number): Uint8Array => data.subarray(need(n), p);
  const str = (n: number): string => {
    try {
      return utf8.decode(bytes(n));
    } catch {
      return fail('string is not valid UTF-8');
    }
  };
  const line = (): string => {
    const end = data.indexOf(0x0a, p);
    if (end < 0) fail('text argument has no end of line');
    const s = latin1.decode(data.subarray(p, end));
    p = end + 1;
    return s;
  };
  const pop = (): unknown => {
    if (stack.length === 0 || (marks.length && stack.length <= marks[marks.length - 1])) fail('stack underflow');
    return stack.pop();
  };
  const top = (): unknown => {
    if (stack.length === 0 || (marks.length && stack.length <= marks[marks.length - 1])) fail('stack underflow');
    return stack[stack.length - 1];
  };
  const popMark = (): unknown[] => {
    const m = marks.pop();
    if (m === undefined) fail('no MARK to pop to');
    return stack.splice(m as number);
  };
  const put = (i: number): void => {
    if (stack.length === 0) fail('memo store from an empty stack');
    memo.set(i, stack[stack.length - 1]);
  };
  const get = (i: number): void => {
    if (!memo.has(i)) fail(`memo key ${i} was never stored`);
    stack.push(memo.get(i));
  };
  const global = (module: string, name: string): void => {
    const full = `${module}.${name}`;
    if (!Object.hasOwn(o.globals, full))
      fail(
        `refusing to run pickle global ${full} (only tensors, storages and plain containers are read; the file may run code if loaded by torch.load without weights_only)`,
      );
    stack.push(new PyGlobal(full, o.globals[full]));
  };
  const setItems = (d: unknown, kv: unknown[]): void => {
    if (!(d instanceof PyDict)) fail(`SETITEM(S) on ${typeName(d)}, not a dict`);
    if (kv.length % 2) fail('SETITEMS with an odd number of items');
    for (let i = 0; i < kv.length; i += 2) {
      const k = kv[i];
      if (k !== null && typeof k === 'object') fail(`dict key of type ${typeName(k)} is not supported (keys are str or int)`);
      (d as PyDict).map.set(k, kv[i + 1]);
    }
  };
  const append = (l: unknown, items: unknown[]): void => {
    if (!Array.isArray(l)) fail(`APPEND(S) on ${typeName(l)}, not a list`);
    for (const x of items) (l as unknown[]).push(x);
  };
  const int = (v: bigint): number => {
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) fail(`integer ${v} is too large`);
    return Number(v);
  };
  const long = (n: number): number => {
    if (n > 8) fail(`integer of ${n} bytes is too large`);
    const b = bytes(n);
    let v = 0n;
    for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
    if (n > 0 && b[n - 1] & 0x80) v -= 1n << BigInt(8 * n);
    return int(v);
  };

  for (;;) {
    at = p;
    if (p >= data.length) fail('pickle ends without STOP');
    const op = data[p++];
    switch (op) {
      case 0x80: // PROTO
        if (u8() > 5) fail(`pickle protocol ${data[p - 1]} is not supported`);
        break;
      case 0x95: // FRAME (protocol 4): a length hint, the opcodes follow inline
        need(8);
        break;
      case 0x2e: // STOP
        if (stack.length !== 1 || marks.length) fail(`STOP with ${stack.length} values on the stack and ${marks.length} open marks`);
        return stack[0];
      case 0x28: // MARK
        marks.push(stack.length);
        break;
      case 0x30: // POP
        pop();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        stack.push(top());
        break;
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x88: // NEWTRUE
      case 0x89: // NEWFALSE
        stack.push(op === 0x88);
        break;
      case 0x4a: // BININT
        stack.push(dv.getInt32(need(4), true));
        break;
      case 0x4b: // BININT1
        stack.push(u8());
        break;
      case 0x4d: // BININT2
        stack.push(u16());
        break;
      case 0x8a: // LONG1
        stack.push(long(u8()));
        break;
      case 0x8b: // LONG4
        stack.push(long(u32()));
        break;
      case 0x47: // BINFLOAT (big-endian)
        stack.push(dv.getFloat64(need(8), false));
        break;
      case 0x49: {
        // INT (text): also protocol 0's True/False
        const s = line();
        if (s === '01' || s === '00') stack.push(s === '01');
        else if (/^-?\d{1,16}$/.test(s)) stack.push(int(BigInt(s)));
        else fail(`INT argument ${JSON.stringify(s.slice(0, 40))} is not an integer`);
        break;
      }
      case 0x58: // BINUNICODE
        stack.push(str(u32()));
        break;
      case 0x8c: // SHORT_BINUNICODE
        stack.push(str(u8()));
        break;
      case 0x8d: // BINUNICODE8
        stack.push(str(u64()));
        break;
      case 0x54: // BINSTRING (Python 2 str)
        stack.push(latin1.decode(bytes(dv.getInt32(need(4), true))));
        break;
      case 0x55: // SHORT_BINSTRING
        stack.push(latin1.decode(bytes(u8())));
        break;
      case 0x42: // BINBYTES
        stack.push(bytes(u32()));
        break;
      case 0x43: // SHORT_BINBYTES
        stack.push(bytes(u8()));
        break;
      case 0x8e: // BINBYTES8
        stack.push(bytes(u64()));
        break;
      case 0x29: // EMPTY_TUPLE
        stack.push(new PyTuple([]));
        break;
      case 0x74: // TUPLE
        stack.push(new PyTuple(popMark()));
        break;
      case 0x85: // TUPLE1
      case 0x86: // TUPLE2
      case 0x87: {
        // TUPLE3
        const n = op - 0x84;
        const items: unknown[] = [];
        for (let i = 0; i < n; i++) items.unshift(pop());
        stack.push(new PyTuple(items));
        break;
      }
      case 0x5d: // EMPTY_LIST
        stack.push([]);
        break;
      case 0x6c: // LIST
        stack.push(popMark());
        break;
      case 0x61: {
        // APPEND
        const x = pop();
        append(top(), [x]);
        break;
      }
      case 0x65: {
        // APPENDS
        const items = popMark();
        append(top(), items);
        break;
      }
      case 0x7d: // EMPTY_DICT
        stack.push(new PyDict());
        break;
      case 0x64: {
        // DICT
        const d = new PyDict();
        setItems(d, popMark());
        stack.push(d);
        break;
      }
      case 0x73: {
        // SETITEM
        const v = pop();
        const k = pop();
        setItems(top(), [k, v]);
        break;
      }
      case 0x75: {
        // SETITEMS
        const kv = popMark();
        setItems(top(), kv);
        break;
      }
      case 0x63: {
        // GLOBAL "module\nname\n"
        const module = line();
        global(module, line());
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') fail('STACK_GLOBAL needs two strings');
        global(module as string, name as string);
        break;
      }
      case 0x52: {
        // REDUCE
        const args = pop();
        const fn = pop();
        if (!(fn instanceof PyGlobal) || !fn.call) fail(`REDUCE calls ${fn instanceof PyGlobal ? fn.name : typeName(fn)}, which is not callable here`);
        if (!(args instanceof PyTuple)) fail(`REDUCE arguments are ${typeName(args)}, not a tuple`);
        try {
          stack.push((fn as PyGlobal).call!((args as PyTuple).items));
        } catch (e) {
          if (e instanceof LlamaAdapterError) fail(`${(fn as PyGlobal).name}: ${e.message}`);
          throw e;
        }
        break;
      }
      case 0x62: {
        // BUILD: only a dict's attribute state (OrderedDict._metadata) is accepted, and kept aside
        const state = pop();
        const obj = top();
        const s = state instanceof PyTuple && state.items.length === 2 ? state.items[0] : state;
        if (!(obj instanceof PyDict) || !(s instanceof PyDict || s === null)) fail(`BUILD of ${typeName(obj)} with ${typeName(state)} is not supported`);
        if (s instanceof PyDict) for (const [k, v] of s.map) (obj as PyDict).attrs.set(String(k), v);
        break;
      }
      case 0x71: // BINPUT
        put(u8());
        break;
      case 0x72: // LONG_BINPUT
        put(u32());
        break;
      case 0x94: // MEMOIZE
        put(memo.size);
        break;
      case 0x68: // BINGET
        get(u8());
        break;
      case 0x6a: // LONG_BINGET
        get(u32());
        break;
      case 0x51: // BINPERSID
      case 0x50: {
        // PERSID
        const pid = op === 0x51 ? pop() : line();
        if (!o.persistentLoad) fail('persistent ids are not allowed here');
        try {
          stack.push(o.persistentLoad!(pid));
        } catch (e) {
          if (e instanceof LlamaAdapterError) fail(`persistent id: ${e.message}`);
          throw e;
        }
        break;
      }
      default:
        fail(
          `opcode 0x${op.toString(16).padStart(2, '0')} is not supported (it builds objects other than tensors and plain containers, or the data is corrupt)`,
        );
    }
  }
}

/** A Python type name for error messages. */
export function typeName(v: unknown): string {
  if (v === null) return 'None';
  if (Array.isArray(v)) return 'list';
  if (v instanceof PyTuple) return 'tuple';
  if (v instanceof PyDict) return 'dict';
  if (v instanceof PyGlobal) return v.name;
  if (v instanceof Uint8Array) return 'bytes';
  if (typeof v === 'object') return (v as object).constructor?.name ?? 'object';
  return { number: 'int or float', string: 'str', boolean: 'bool', bigint: 'int' }[typeof v as 'number'] ?? typeof v;
}

/** Emits protocol-2 pickle opcodes (the subset torch.save uses for a state dict). */
export class PickleWriter {
  private readonly parts: Buffer[] = [Buffer.from([0x80, 2])];

  private op(...b: number[]): this {
    this.parts.push(Buffer.from(b));
    return this;
  }

  mark(): this {
    return this.op(0x28);
  }
  emptyDict(): this {
    return this.op(0x7d);
  }
  emptyTuple(): this {
    return this.op(0x29);
  }
  tuple(): this {
    return this.op(0x74);
  }
  setItems(): this {
    return this.op(0x75);
  }
  reduce(): this {
    return this.op(0x52);
  }
  binPersId(): this {
    return this.op(0x51);
  }
  bool(v: boolean): this {
    return this.op(v ? 0x88 : 0x89);
  }
  stop(): this {
    return this.op(0x2e);
  }

  /** A non-negative integer below 2^31 (BININT1 / BININT2 / BININT). */
  int(n: number): this {
    if (!(Number.isInteger(n) && n >= 0 && n < 2 ** 31)) throw new LlamaAdapterError(`pickle writer: integer ${n} is out of range`);
    if (n < 256) return this.op(0x4b, n);
    if (n < 65536) return this.op(0x4d, n & 0xff, n >> 8);
    const b = Buffer.alloc(5);
    b[0] = 0x4a;
    b.writeInt32LE(n, 1);
    this.parts.push(b);
    return this;
  }

  str(s: string): this {
    const body = Buffer.from(s, 'utf8');
    const head = Buffer.alloc(5);
    head[0] = 0x58;
    head.writeUInt32LE(body.length, 1);
    this.parts.push(head, body);
    return this;
  }

  global(module: string, name: string): this {
    this.parts.push(Buffer.from(`c${module}\n${name}\n`, 'latin1'));
    return this;
  }

  bytes(): Uint8Array {
    return Buffer.concat(this.parts);
  }
}
