// A bounded zip reader and a stored-entry zip writer, for PyTorch's `torch.save` archives (which
// store their entries uncompressed). The reader trusts nothing: it finds the end-of-central-
// directory record (zip64 too), checks every count, size and offset against the file before
// using it, refuses encrypted, split and duplicate entries, and checks each entry's CRC-32 when
// it is read. Deflated entries are inflated with a cap of their declared size. The writer puts
// each entry's data at a 64-byte boundary (as torch does, so torch can map it) and writes no zip64
// (archives stay under 4 GiB).
import * as zlib from 'node:zlib';
import { check, LlamaAdapterError } from './errors.js';

const LOCAL_SIG = 0x04034b50;
const CENTRAL_SIG = 0x02014b50;
const EOCD_SIG = 0x06054b50;
const ZIP64_EOCD_SIG = 0x06064b50;
const ZIP64_LOCATOR_SIG = 0x07064b50;
const EOCD_SIZE = 22;
const CENTRAL_SIZE = 46;
const LOCAL_SIZE = 30;
/** Entries an archive may list (a torch state dict has one per storage). */
const MAX_ENTRIES = 1 << 20;

interface ZipEntry {
  name: string;
  method: number; // 0 stored, 8 deflate
  crc: number;
  compressedSize: number;
  size: number; // uncompressed
  localOffset: number; // offset of the local header
}

/** A zip archive held in memory: its entry names and their contents. */
export class ZipArchive {
  private readonly entries = new Map<string, ZipEntry>();
  private readonly cdStart: number; // entries' data must lie before the central directory

  constructor(
    readonly path: string,
    private readonly buf: Uint8Array,
  ) {
    const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    const u16 = (o: number): number => dv.getUint16(o, true);
    const u32 = (o: number): number => dv.getUint32(o, true);
    const u64 = (o: number, what: string): number => {
      const v = dv.getBigUint64(o, true);
      check(v <= BigInt(buf.length), () => `${path}: zip ${what} ${v} is larger than the file (${buf.length} bytes)`);
      return Number(v);
    };
    // the end-of-central-directory record: the last signature within 22 + 65535 bytes of the end
    let eocd = -1;
    for (let o = buf.length - EOCD_SIZE; o >= Math.max(0, buf.length - EOCD_SIZE - 0xffff); o--) {
      if (u32(o) === EOCD_SIG && o + EOCD_SIZE + u16(o + 20) === buf.length) {
        eocd = o;
        break;
      }
    }
    check(eocd >= 0, `${path}: not a zip archive (no end-of-central-directory record): truncated, or not a torch.save file`);
    let disk = u16(eocd + 4);
    let cdDisk = u16(eocd + 6);
    let count = u16(eocd + 10);
    let cdSize = u32(eocd + 12);
    let cdOffset = u32(eocd + 16);
    check(
      u16(eocd + 8) === count,
      `${path}: zip end record lists ${u16(eocd + 8)} entries on this disk but ${count} in all (split archives are not supported)`,
    );
    if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
      // zip64: a locator just before the end record points at the zip64 end record
      const loc = eocd - 20;
      check(loc >= 0 && u32(loc) === ZIP64_LOCATOR_SIG, `${path}: zip end record needs a zip64 record, but there is no zip64 locator before it`);
      const z = u64(loc + 8, 'zip64 end record offset');
      check(z + 56 <= loc && u32(z) === ZIP64_EOCD_SIG, `${path}: zip64 end record at ${z} is missing or overlaps the locator`);
      disk = u32(z + 16);
      cdDisk = u32(z + 20);
      count = u64(z + 32, 'entry count');
      check(u64(z + 24, 'entry count on this disk') === count, `${path}: split zip archives are not supported`);
      cdSize = u64(z + 40, 'central directory size');
      cdOffset = u64(z + 48, 'central directory offset');
    }
    check(disk === 0 && cdDisk === 0, `${path}: split (multi-disk) zip archives are not supported`);
    check(count <= MAX_ENTRIES, `${path}: zip lists ${count} entries, more than the ${MAX_ENTRIES} allowed`);
    check(
      cdOffset + cdSize <= eocd && count * CENTRAL_SIZE <= cdSize,
      () => `${path}: zip central directory (${count} entries, ${cdSize} bytes at ${cdOffset}) does not fit before the end record at ${eocd}`,
    );
    this.cdStart = cdOffset;
    const utf8 = new TextDecoder('utf-8', { fatal: true });
    let o = cdOffset;
    for (let i = 0; i < count; i++) {
      check(o + CENTRAL_SIZE <= cdOffset + cdSize && u32(o) === CENTRAL_SIG, () => `${path}: zip central directory entry ${i} at ${o} is corrupt`);
      const flags = u16(o + 8);
      const method = u16(o + 10);
      const nameLen = u16(o + 28);
      const extraLen = u16(o + 30);
      const commentLen = u16(o + 32);
      const next = o + CENTRAL_SIZE + nameLen + extraLen + commentLen;
      check(next <= cdOffset + cdSize, () => `${path}: zip central directory entry ${i} runs past the directory`);
      let name: string;
      try {
        name = utf8.decode(buf.subarray(o + CENTRAL_SIZE, o + CENTRAL_SIZE + nameLen));
      } catch {
        throw new LlamaAdapterError(`${path}: zip entry ${i} has a name that is not valid UTF-8`);
      }
      check((flags & 1) === 0, `${path}: zip entry "${name}" is encrypted`);
      check(method === 0 || method === 8, `${path}: zip entry "${name}" uses compression method ${method} (supported: 0 stored, 8 deflate)`);
      let compressedSize = u32(o + 20);
      let size = u32(o + 24);
      let localOffset = u32(o + 42);
      // zip64 extended information (extra field 0x0001): the 64-bit values of the fields set to 0xffffffff, in this order
      for (let e = o + CENTRAL_SIZE + nameLen; e + 4 <= o + CENTRAL_SIZE + nameLen + extraLen; ) {
        const id = u16(e);
        const len = u16(e + 2);
        check(e + 4 + len <= o + CENTRAL_SIZE + nameLen + extraLen, `${path}: zip entry "${name}" has a corrupt extra field`);
        if (id === 1) {
          let p = e + 4;
          const take = (what: string): number => {
            check(p + 8 <= e + 4 + len, `${path}: zip entry "${name}": zip64 extra field is too short for its ${what}`);
            const v = u64(p, `entry "${name}" ${what}`);
            p += 8;
            return v;
          };
          if (size === 0xffffffff) size = take('size');
          if (compressedSize === 0xffffffff) compressedSize = take('compressed size');
          if (localOffset === 0xffffffff) localOffset = take('offset');
        }
        e += 4 + len;
      }
      check(!this.entries.has(name), `${path}: zip entry "${name}" appears twice`);
      check(
        localOffset + LOCAL_SIZE + compressedSize <= cdOffset,
        () => `${path}: zip entry "${name}" (${compressedSize} bytes at ${localOffset}) does not fit before the central directory`,
      );
      check(method !== 0 || size === compressedSize, `${path}: stored zip entry "${name}" has size ${size} but ${compressedSize} stored bytes`);
      this.entries.set(name, { name, method, crc: u32(o + 16), compressedSize, size, localOffset });
      o = next;
    }
  }

  /** Entry names in directory order. */
  names(): string[] {
    return [...this.entries.keys()];
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  /** Uncompressed size of an entry (as the directory says; read() checks it). */
  size(name: string): number {
    return this.entry(name).size;
  }

  /** An entry's contents (a view for stored entries), CRC-checked. */
  read(name: string): Uint8Array {
    const e = this.entry(name);
    const dv = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
    const lo = e.localOffset;
    check(dv.getUint32(lo, true) === LOCAL_SIG, `${this.path}: zip entry "${name}": no local header at offset ${lo}`);
    const start = lo + LOCAL_SIZE + dv.getUint16(lo + 26, true) + dv.getUint16(lo + 28, true);
    check(
      start + e.compressedSize <= this.cdStart,
      () => `${this.path}: zip entry "${name}": data (${e.compressedSize} bytes at ${start}) runs into the central directory`,
    );
    const raw = this.buf.subarray(start, start + e.compressedSize);
    let data: Uint8Array = raw;
    if (e.method === 8) {
      try {
        data = zlib.inflateRawSync(raw, { maxOutputLength: Math.max(1, e.size) });
      } catch (err) {
        throw new LlamaAdapterError(`${this.path}: zip entry "${name}" cannot be inflated (${(err as Error).message})`, { cause: err });
      }
      check(data.length === e.size, `${this.path}: zip entry "${name}" inflates to ${data.length} bytes, the directory says ${e.size}`);
    }
    const crc = zlib.crc32(data) >>> 0;
    check(crc === e.crc, () => `${this.path}: zip entry "${name}" fails its CRC-32 check (${hex(crc)}, expected ${hex(e.crc)}): the file is corrupt`);
    return data;
  }

  private entry(name: string): ZipEntry {
    const e = this.entries.get(name);
    if (!e) throw new LlamaAdapterError(`${this.path}: zip archive has no entry "${name}"`);
    return e;
  }
}

function hex(n: number): string {
  return `0x${n.toString(16).padStart(8, '0')}`;
}

/** Entry data in a written archive starts at a multiple of this (torch's alignment). */
const ALIGN = 64;

/** A zip archive of stored (uncompressed) entries, in the given order, as bytes. */
export function zipStored(entries: readonly { name: string; data: Uint8Array }[]): Uint8Array {
  const parts: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let off = 0;
  for (const { name, data } of entries) {
    const nameBytes = Buffer.from(name, 'utf8');
    // pad the local extra field so the data begins at an ALIGN boundary (extra id 0x4246 "FB", as torch writes)
    const base = off + LOCAL_SIZE + nameBytes.length;
    const fill = (ALIGN - ((base + 4) % ALIGN)) % ALIGN;
    const extra = Buffer.alloc(4 + fill);
    extra.writeUInt16LE(0x4246, 0);
    extra.writeUInt16LE(fill, 2);
    const pad = extra.length;
    const crc = zlib.crc32(data) >>> 0;
    check(off + LOCAL_SIZE + nameBytes.length + pad + data.length < 0xffffffff, `zip archive of ${name} would exceed 4 GiB (zip64 is not written)`);
    const local = Buffer.alloc(LOCAL_SIZE);
    local.writeUInt32LE(LOCAL_SIG, 0);
    local.writeUInt16LE(20, 4); // version needed
    local.writeUInt16LE(0x0800, 6); // flags: UTF-8 names
    local.writeUInt16LE(0, 8); // stored
    local.writeUInt32LE(0x00210000, 10); // DOS time/date: 1980-01-01 00:00, deterministic
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(data.length, 18);
    local.writeUInt32LE(data.length, 22);
    local.writeUInt16LE(nameBytes.length, 26);
    local.writeUInt16LE(pad, 28);
    const cd = Buffer.alloc(CENTRAL_SIZE);
    cd.writeUInt32LE(CENTRAL_SIG, 0);
    cd.writeUInt16LE(20, 4); // version made by
    cd.writeUInt16LE(20, 6); // version needed
    cd.writeUInt16LE(0x0800, 8);
    cd.writeUInt16LE(0, 10);
    cd.writeUInt32LE(0x00210000, 12);
    cd.writeUInt32LE(crc, 16);
    cd.writeUInt32LE(data.length, 20);
    cd.writeUInt32LE(data.length, 24);
    cd.writeUInt16LE(nameBytes.length, 28);
    cd.writeUInt32LE(off, 42);
    parts.push(local, nameBytes, extra, data);
    central.push(cd, nameBytes);
    off += LOCAL_SIZE + nameBytes.length + pad + data.length;
  }
  const cdSize = central.reduce((s, b) => s + b.length, 0);
  const end = Buffer.alloc(EOCD_SIZE);
  end.writeUInt32LE(EOCD_SIG, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(cdSize, 12);
  end.writeUInt32LE(off, 16);
  check(entries.length < 0xffff, `zip archive with ${entries.length} entries needs zip64, which is not written`);
  return Buffer.concat([...parts, ...central, end]);
}
