/**
 * The binary frames of the small-file delta (PROTOCOL.md, "Small-file delta", version 3):
 *
 *   Signatures (R→C)  uint16 path length | path | uint32 size | uint32 block size |
 *                     ceil(size / block size) × (uint32 weak | 16 bytes strong)
 *                     (a block size of 0, size 0 and no records: no such file to offer)
 *   Patch (C→R)       the binary file header (fileHeader.ts) | uint32 block size | steps:
 *                     0x01 | uint32 block | uint32 count   (blocks of the base's file)
 *                     0x02 | uint32 length | bytes          (literal bytes)
 */
import { bytesOfName, nameFromBytes } from "./byteNames.ts";
import { type BinaryFileHeader, decodeFileHeader, encodeFileHeader } from "./fileHeader.ts";
import { encodeFrame, FrameType, ProtocolError } from "./frames.ts";
import type { BlockSignature, PatchOp } from "../transfer/smallFileDelta.ts";

const MAX_SIZE = 64 * 1024;
const RECORD = 4 + 16;
const COPY = 1;
const LITERAL = 2;

export function decodeSignatures(payload: Buffer): { path: string; signature: BlockSignature | undefined } {
  const pathLength = payload.length >= 2 ? payload.readUInt16BE(0) : -1;
  const fixed = 2 + pathLength;
  if (pathLength < 1 || pathLength > 4096 || payload.length < fixed + 8) {
    throw new ProtocolError("bad-message", "Signatures frame with a bad path length or a short header");
  }
  const path = nameFromBytes(payload.subarray(2, fixed));
  const size = payload.readUInt32BE(fixed);
  const blockSize = payload.readUInt32BE(fixed + 4);
  const records = payload.subarray(fixed + 8);
  if (blockSize === 0) {
    if (size !== 0 || records.length !== 0) {
      throw new ProtocolError("bad-message", "Signatures frame with records but no block size");
    }
    return { path, signature: undefined };
  }
  const blocks = Math.ceil(size / blockSize);
  if (size === 0 || size > MAX_SIZE || blockSize > MAX_SIZE || records.length !== blocks * RECORD) {
    throw new ProtocolError(
      "bad-message",
      `Signatures frame for ${JSON.stringify(path)}: ${records.length} bytes of records ` +
        `for ${size} bytes in blocks of ${blockSize}`,
    );
  }
  const weak = new Uint32Array(blocks);
  const strong = Buffer.allocUnsafe(blocks * 16);
  for (let i = 0; i < blocks; i++) {
    weak[i] = records.readUInt32BE(i * RECORD);
    records.copy(strong, i * 16, i * RECORD + 4, (i + 1) * RECORD);
  }
  return { path, signature: { blockSize, size, weak, strong } };
}

export function encodeSignatures(path: string, signature: BlockSignature | undefined): Buffer {
  const name = bytesOfName(path);
  const blocks = signature ? signature.weak.length : 0;
  const payload = Buffer.allocUnsafe(2 + name.length + 8 + blocks * RECORD);
  payload.writeUInt16BE(name.length, 0);
  name.copy(payload, 2);
  let at = 2 + name.length;
  payload.writeUInt32BE(signature?.size ?? 0, at);
  payload.writeUInt32BE(signature?.blockSize ?? 0, at + 4);
  at += 8;
  for (let i = 0; i < blocks; i++) {
    payload.writeUInt32BE(signature!.weak[i]!, at);
    signature!.strong.copy(payload, at + 4, i * 16, i * 16 + 16);
    at += RECORD;
  }
  return encodeFrame(FrameType.Signatures, payload);
}

export function decodePatch(payload: Buffer): {
  header: BinaryFileHeader;
  blockSize: number;
  ops: PatchOp[];
} {
  const { header, end } = decodeFileHeader(payload, "Patch");
  if (payload.length < end + 4) throw new ProtocolError("bad-message", "Patch frame without a block size");
  const blockSize = payload.readUInt32BE(end);
  if (blockSize === 0 || blockSize > MAX_SIZE) {
    throw new ProtocolError("bad-message", `Patch frame with a block size of ${blockSize}`);
  }
  const ops: PatchOp[] = [];
  for (let at = end + 4; at < payload.length;) {
    const kind = payload[at];
    if (kind === COPY && at + 9 <= payload.length) {
      ops.push({ copy: payload.readUInt32BE(at + 1), count: payload.readUInt32BE(at + 5) });
      at += 9;
    } else if (kind === LITERAL && at + 5 <= payload.length) {
      const length = payload.readUInt32BE(at + 1);
      if (length === 0 || at + 5 + length > payload.length) {
        throw new ProtocolError("bad-message", `Patch frame with a literal of ${length} bytes past its end`);
      }
      ops.push({ literal: payload.subarray(at + 5, at + 5 + length) });
      at += 5 + length;
    } else {
      throw new ProtocolError("bad-message", `Patch frame with a bad step at byte ${at}`);
    }
  }
  return { header, blockSize, ops };
}

export function encodePatch(header: BinaryFileHeader, blockSize: number, ops: readonly PatchOp[]): Buffer {
  const size = Buffer.alloc(4);
  size.writeUInt32BE(blockSize, 0);
  const parts: Buffer[] = [encodeFileHeader(header), size];
  for (const op of ops) {
    if ("copy" in op) {
      const step = Buffer.allocUnsafe(9);
      step[0] = COPY;
      step.writeUInt32BE(op.copy, 1);
      step.writeUInt32BE(op.count, 5);
      parts.push(step);
    } else {
      const step = Buffer.allocUnsafe(5);
      step[0] = LITERAL;
      step.writeUInt32BE(op.literal.length, 1);
      parts.push(step, op.literal);
    }
  }
  return encodeFrame(FrameType.Patch, Buffer.concat(parts));
}
