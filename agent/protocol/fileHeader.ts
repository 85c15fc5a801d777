/**
 * The binary file header of BinaryFile and Patch (version 3): `uint16 BE path length |
 * path (its bytes) | uint32 BE size | uint64 BE mtime | uint16 BE mode | 32 bytes SHA-256`,
 * checked as strictly as the File frame's JSON header is by its schema.
 */
import { bytesOfName, nameFromBytes } from "./byteNames.ts";
import { ProtocolError } from "./frames.ts";

/** What a file header carries (messages.ts's FileHeader). */
export interface BinaryFileHeader {
  path: string;
  size: number;
  mtime: number;
  mode: number;
  sha256: string;
}

/** The largest file a header may declare: INLINE_MAX (messages.ts). */
const MAX_SIZE = 64 * 1024;
const FIXED = 4 + 8 + 2 + 32;

/** The header at the start of `payload`, and where it ends; `what` names the frame in errors. */
export function decodeFileHeader(payload: Buffer, what: string): { header: BinaryFileHeader; end: number } {
  const pathLength = payload.length >= 2 ? payload.readUInt16BE(0) : -1;
  const fixed = 2 + pathLength;
  if (pathLength < 1 || pathLength > 4096 || payload.length < fixed + FIXED) {
    throw new ProtocolError("bad-message", `${what} frame with a bad path length or a short header`);
  }
  const path = nameFromBytes(payload.subarray(2, fixed));
  const size = payload.readUInt32BE(fixed);
  const mtime = Number(payload.readBigUInt64BE(fixed + 4));
  const mode = payload.readUInt16BE(fixed + 12);
  const sha256 = payload.subarray(fixed + 14, fixed + FIXED).toString("hex");
  if (!Number.isSafeInteger(mtime) || mode > 0o7777 || size > MAX_SIZE) {
    throw new ProtocolError(
      "bad-message",
      `${what} frame for ${JSON.stringify(path)}: size, mtime or mode out of range`,
    );
  }
  return { header: { path, size, mtime, mode, sha256 }, end: fixed + FIXED };
}

export function encodeFileHeader(header: BinaryFileHeader): Buffer {
  const path = bytesOfName(header.path);
  const head = Buffer.allocUnsafe(2 + path.length + FIXED);
  head.writeUInt16BE(path.length, 0);
  path.copy(head, 2);
  const at = 2 + path.length;
  head.writeUInt32BE(header.size, at);
  head.writeBigUInt64BE(BigInt(header.mtime), at + 4);
  head.writeUInt16BE(header.mode, at + 12);
  head.write(header.sha256, at + 14, "hex");
  return head;
}
