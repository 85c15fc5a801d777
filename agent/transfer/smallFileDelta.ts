/**
 * Sub-file delta for small files (PROTOCOL.md, "Small-file delta", version 3), as rsync
 * does it for every file: the receiver sends the block signatures of its copy (a rolling
 * weak checksum and a strong hash per fixed-size block), the sender finds those blocks at
 * any offset of the new content and sends only what is not among them. Large files use
 * content-defined chunks instead (Copy frames); this is for files up to INLINE_MAX, which
 * otherwise travel whole however small the edit.
 *
 * Pure functions: signatures, a patch, and its application. The receiver still checks
 * the result's SHA-256 against the one the sender names, so a weak or strong collision
 * can fail a file, never store a wrong one.
 */
import { createHash } from "node:crypto";

/** A patch step: `count` blocks of the base from `block`, or literal bytes. */
export type PatchOp = { copy: number; count: number } | { literal: Buffer };

export interface BlockSignature {
  blockSize: number;
  /** The base's size: its last block may be shorter than blockSize. */
  size: number;
  weak: Uint32Array;
  /** 16 bytes per block: the first half of its SHA-256. */
  strong: Buffer;
}

/**
 * Small blocks: an edit costs its bytes plus up to two blocks around it, and the
 * signatures (20 bytes a block) travel from the receiver, which the goal does not count
 * against (B2: bytes sent ≤ 1.1× the changed bytes). 64 bytes up to 16 KiB, then 128: at
 * most 10 KiB of signatures for a 64 KiB file. (rsync takes about √size, at least 700.)
 */
export function blockSizeFor(size: number): number {
  return size <= 16 * 1024 ? 64 : 128;
}

/** rsync's rolling checksum of bytes[start, start+length): two 16-bit sums. */
function weakSum(bytes: Uint8Array, start: number, length: number): { a: number; b: number } {
  let a = 0;
  let b = 0;
  for (let i = 0; i < length; i++) {
    a = (a + bytes[start + i]!) & 0xffff;
    b = (b + (length - i) * bytes[start + i]!) & 0xffff;
  }
  return { a, b };
}

const strongOf = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest().subarray(0, 16);

export function signatureOf(base: Uint8Array, blockSize = blockSizeFor(base.length)): BlockSignature {
  const blocks = Math.ceil(base.length / blockSize);
  const weak = new Uint32Array(blocks);
  const strong = Buffer.allocUnsafe(blocks * 16);
  for (let i = 0; i < blocks; i++) {
    const start = i * blockSize;
    const length = Math.min(blockSize, base.length - start);
    const { a, b } = weakSum(base, start, length);
    weak[i] = ((b << 16) | a) >>> 0;
    strongOf(base.subarray(start, start + length)).copy(strong, i * 16);
  }
  return { blockSize, size: base.length, weak, strong };
}

/**
 * The steps that turn the base into `content`, or undefined when they would not be
 * smaller than sending `content` whole (then it travels as a file).
 */
export function patchFor(content: Uint8Array, signature: BlockSignature): PatchOp[] | undefined {
  const { blockSize, weak, strong } = signature;
  const fullBlocks = Math.floor(signature.size / blockSize);
  const lastLength = signature.size - fullBlocks * blockSize;
  const byWeak = new Map<number, number[]>();
  weak.forEach((sum, block) => {
    const length = block < fullBlocks ? blockSize : lastLength;
    if (length !== blockSize) return; // the short last block is matched at the end only
    const list = byWeak.get(sum);
    if (list) list.push(block);
    else byWeak.set(sum, [block]);
  });
  const ops: PatchOp[] = [];
  let literalStart = 0;
  const copy = (block: number) => {
    const last = ops.at(-1);
    if (last && "copy" in last && last.copy + last.count === block) last.count++;
    else ops.push({ copy: block, count: 1 });
  };
  const flushLiteral = (end: number) => {
    if (end > literalStart) ops.push({ literal: Buffer.from(content.subarray(literalStart, end)) });
  };
  const matches = (block: number, at: number, length: number) =>
    strongOf(content.subarray(at, at + length)).equals(strong.subarray(block * 16, block * 16 + 16));

  let at = 0;
  let sums = content.length >= blockSize ? weakSum(content, 0, blockSize) : undefined;
  while (sums && at + blockSize <= content.length) {
    const candidates = byWeak.get(((sums.b << 16) | sums.a) >>> 0);
    const found = candidates?.find((block) => matches(block, at, blockSize));
    if (found !== undefined) {
      flushLiteral(at);
      copy(found);
      at += blockSize;
      literalStart = at;
      sums = at + blockSize <= content.length ? weakSum(content, at, blockSize) : undefined;
      continue;
    }
    // Roll one byte: drop content[at], take content[at + blockSize].
    if (at + blockSize < content.length) {
      const out = content[at]!;
      const inByte = content[at + blockSize]!;
      const a = (sums.a - out + inByte) & 0xffff;
      const b = (sums.b - blockSize * out + a) & 0xffff;
      sums = { a, b };
    }
    at++;
  }
  // The base's short last block, where the content ends the same way.
  if (lastLength > 0 && content.length - literalStart >= lastLength) {
    const tail = content.length - lastLength;
    if (matches(fullBlocks, tail, lastLength)) {
      flushLiteral(tail);
      copy(fullBlocks);
      literalStart = content.length;
    }
  }
  flushLiteral(content.length);
  const cost = ops.reduce((sum, op) => sum + ("copy" in op ? 9 : 5 + op.literal.length), 0);
  return cost < content.length ? ops : undefined;
}

/** The content `ops` make of `base`; throws a RangeError naming the step that does not fit. */
export function applyPatch(
  base: Uint8Array,
  blockSize: number,
  ops: readonly PatchOp[],
  size: number,
): Buffer {
  const out = Buffer.allocUnsafe(size);
  const blocks = Math.ceil(base.length / blockSize);
  let at = 0;
  for (const op of ops) {
    if ("copy" in op && (op.count < 1 || op.copy + op.count > blocks))
      throw new RangeError(`blocks ${op.copy}+${op.count} are not in the base file (${blocks} blocks)`);
    const part =
      "copy" in op
        ? base.subarray(op.copy * blockSize, Math.min(base.length, (op.copy + op.count) * blockSize))
        : op.literal;
    if (at + part.length > size)
      throw new RangeError(`the patch makes more than the ${size} bytes it declares`);
    out.set(part, at);
    at += part.length;
  }
  if (at !== size) throw new RangeError(`the patch makes ${at} bytes, not the ${size} it declares`);
  return out;
}
