/**
 * A minimal protobuf wire-format writer and reader, enough for the ONNX
 * messages we emit (onnx.proto: ModelProto, GraphProto, NodeProto,
 * TensorProto, AttributeProto, ValueInfoProto). Field numbers live in
 * `model.ts` next to the messages that use them.
 */
import { FormatError } from '../../errors.js';

const enc = new TextEncoder();

/** Builds one message; nested messages are written by a child writer and embedded as bytes. */
export class ProtoWriter {
  private chunks: Uint8Array[] = [];
  private cur = new Uint8Array(256);
  private pos = 0;
  private total = 0;

  private ensure(n: number): void {
    if (this.pos + n <= this.cur.length) return;
    this.chunks.push(this.cur.subarray(0, this.pos));
    this.cur = new Uint8Array(Math.max(n, 4096));
    this.pos = 0;
  }

  private byte(b: number): void {
    this.ensure(1);
    this.cur[this.pos++] = b;
    this.total++;
  }

  private raw(bytes: Uint8Array): void {
    if (bytes.length > 1024) {
      this.chunks.push(this.cur.subarray(0, this.pos));
      this.chunks.push(bytes);
      this.cur = new Uint8Array(4096);
      this.pos = 0;
    } else {
      this.ensure(bytes.length);
      this.cur.set(bytes, this.pos);
      this.pos += bytes.length;
    }
    this.total += bytes.length;
  }

  /** Unsigned varint of a non-negative or (two's complement) negative integer. */
  private varint(v: number | bigint): void {
    let x = BigInt.asUintN(64, BigInt(v));
    if (x < 0x80n) {
      this.byte(Number(x));
      return;
    }
    while (x >= 0x80n) {
      this.byte(Number(x & 0x7fn) | 0x80);
      x >>= 7n;
    }
    this.byte(Number(x));
  }

  private tag(field: number, wire: number): void {
    this.varint((field << 3) | wire);
  }

  int(field: number, v: number | bigint): this {
    this.tag(field, 0);
    this.varint(v);
    return this;
  }

  float(field: number, v: number): this {
    this.tag(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    this.raw(b);
    return this;
  }

  bytes(field: number, b: Uint8Array): this {
    this.tag(field, 2);
    this.varint(b.length);
    this.raw(b);
    return this;
  }

  string(field: number, s: string): this {
    return this.bytes(field, enc.encode(s));
  }

  message(field: number, m: ProtoWriter): this {
    return this.bytes(field, m.finish());
  }

  /** Packed repeated varints. */
  packedInts(field: number, vs: readonly (number | bigint)[]): this {
    const w = new ProtoWriter();
    for (const v of vs) w.varint(v);
    return this.bytes(field, w.finish());
  }

  finish(): Uint8Array {
    if (this.chunks.length === 0) return this.cur.slice(0, this.pos);
    const out = new Uint8Array(this.total);
    let at = 0;
    for (const c of [...this.chunks, this.cur.subarray(0, this.pos)]) {
      out.set(c, at);
      at += c.length;
    }
    return out;
  }
}

export interface ProtoField {
  field: number;
  wire: number;
  /** varint or fixed value (wire 0, 1, 5) */
  int?: bigint;
  /** length-delimited payload (wire 2) */
  bytes?: Uint8Array;
}

/** Decodes one message level into its fields (for tests and inspection). */
export function readFields(buf: Uint8Array): ProtoField[] {
  const out: ProtoField[] = [];
  let pos = 0;
  const varint = (): bigint => {
    let x = 0n;
    let shift = 0n;
    for (;;) {
      if (pos >= buf.length) throw new FormatError('protobuf: truncated varint');
      const b = buf[pos++]!;
      x |= BigInt(b & 0x7f) << shift;
      if (!(b & 0x80)) return x;
      shift += 7n;
      if (shift > 63n) throw new FormatError('protobuf: varint too long');
    }
  };
  while (pos < buf.length) {
    const key = Number(varint());
    const field = key >> 3;
    const wire = key & 7;
    if (wire === 0) out.push({ field, wire, int: varint() });
    else if (wire === 2) {
      const n = Number(varint());
      if (pos + n > buf.length) throw new FormatError('protobuf: truncated field');
      out.push({ field, wire, bytes: buf.subarray(pos, pos + n) });
      pos += n;
    } else if (wire === 5 || wire === 1) {
      const n = wire === 5 ? 4 : 8;
      if (pos + n > buf.length) throw new FormatError('protobuf: truncated fixed field');
      const dv = new DataView(buf.buffer, buf.byteOffset + pos, n);
      out.push({ field, wire, int: n === 4 ? BigInt(dv.getUint32(0, true)) : dv.getBigUint64(0, true) });
      pos += n;
    } else throw new FormatError(`protobuf: unsupported wire type ${wire}`);
  }
  return out;
}
