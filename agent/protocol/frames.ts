/**
 * The wire framing (agent/PROTOCOL.md, "Framing"): every frame is
 *
 *   length: uint32 big-endian | type: uint8 | payload: length - 1 bytes
 *
 * The decoder is the first thing hostile bytes meet, so it trusts nothing: a length of
 * zero or over MAX_FRAME_LENGTH, or an unknown type, is a ProtocolError before any
 * payload is buffered. Memory per connection is therefore bounded by one frame.
 */

export const FrameType = {
  Hello: 0x01,
  Welcome: 0x02,
  Entries: 0x03,
  EntriesEnd: 0x04,
  ChunkList: 0x05,
  EntriesWanted: 0x06,
  Signatures: 0x07,
  File: 0x10,
  Begin: 0x11,
  Data: 0x12,
  Copy: 0x13,
  End: 0x14,
  Directory: 0x15,
  Symlink: 0x16,
  Delete: 0x17,
  Link: 0x18,
  Zeros: 0x19,
  HardLink: 0x1a,
  Abandon: 0x1b,
  SignatureRequest: 0x1c,
  Patch: 0x1d,
  BinaryFile: 0x1e,
  HashedData: 0x1f,
  Commit: 0x20,
  Committed: 0x21,
  Rename: 0x30,
  Flush: 0x31,
  Applied: 0x32,
  Error: 0x7f,
} as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

const KNOWN_TYPES = new Set<number>(Object.values(FrameType));
const TYPE_NAMES = new Map<number, string>(Object.entries(FrameType).map(([name, type]) => [type, name]));

/** The largest length field accepted: a 64 KiB chunk or a 1 MiB JSON message, plus headroom. */
export const MAX_FRAME_LENGTH = 1024 * 1024 + 4096;
const HEADER = 5;

export function frameTypeName(type: number): string {
  return TYPE_NAMES.get(type) ?? `0x${type.toString(16).padStart(2, "0")}`;
}

/** A peer broke the protocol; the session ends with an Error frame carrying `code`. */
export class ProtocolError extends Error {
  readonly code: string;
  /** The path it concerns, when one does (the Error frame's `path`). */
  readonly path: string | undefined;
  constructor(code: string, message: string, path?: string) {
    super(message);
    this.name = "ProtocolError";
    this.code = code;
    this.path = path;
  }
}

export interface Frame {
  type: FrameType;
  payload: Buffer;
}

export function encodeFrame(type: FrameType, payload: Uint8Array): Buffer {
  if (payload.length + 1 > MAX_FRAME_LENGTH) {
    throw new RangeError(`a ${frameTypeName(type)} frame of ${payload.length} bytes exceeds the frame limit`);
  }
  const frame = Buffer.allocUnsafe(HEADER + payload.length);
  frame.writeUInt32BE(payload.length + 1, 0);
  frame[4] = type;
  frame.set(payload, HEADER);
  return frame;
}

/** Incremental decoder: push() the bytes as they arrive, then take frames with next(). */
export class FrameDecoder {
  private readonly pending: Buffer[] = [];
  private pendingBytes = 0;

  get bufferedBytes(): number {
    return this.pendingBytes;
  }

  push(bytes: Buffer): void {
    if (bytes.length === 0) return;
    this.pending.push(bytes);
    this.pendingBytes += bytes.length;
  }

  /** The next whole frame, or undefined until more bytes arrive. Throws ProtocolError. */
  next(): Frame | undefined {
    if (this.pendingBytes < HEADER) return undefined;
    const header = this.peek(HEADER);
    const length = header.readUInt32BE(0);
    const type = header[4]!;
    if (length === 0 || length > MAX_FRAME_LENGTH) {
      throw new ProtocolError(
        "frame-too-large",
        `frame length ${length} is outside 1..${MAX_FRAME_LENGTH}; the peer does not speak this protocol`,
      );
    }
    if (!KNOWN_TYPES.has(type)) {
      throw new ProtocolError("unknown-frame", `unknown frame type ${frameTypeName(type)}`);
    }
    if (this.pendingBytes < 4 + length) return undefined;
    const whole = this.take(4 + length);
    return { type: type as FrameType, payload: whole.subarray(HEADER) };
  }

  private peek(count: number): Buffer {
    const first = this.pending[0]!;
    if (first.length >= count) return first;
    return Buffer.concat(this.pending).subarray(0, count);
  }

  private take(count: number): Buffer {
    const first = this.pending[0]!;
    let result: Buffer;
    if (first.length >= count) {
      result = first.subarray(0, count);
      if (first.length === count) this.pending.shift();
      else this.pending[0] = first.subarray(count);
    } else {
      result = Buffer.allocUnsafe(count);
      let filled = 0;
      while (filled < count) {
        const head = this.pending[0]!;
        const used = Math.min(head.length, count - filled);
        head.copy(result, filled, 0, used);
        filled += used;
        if (used === head.length) this.pending.shift();
        else this.pending[0] = head.subarray(used);
      }
    }
    this.pendingBytes -= count;
    return result;
  }
}
