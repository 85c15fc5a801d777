/**
 * FastCDC content-defined chunking (Xia et al., USENIX ATC 2016, Algorithm 1): a rolling
 * Gear hash over each byte after the minimum size; a cut where the hash's masked bits are
 * all zero, with a harder mask before the normal size and an easier one after it
 * ("normalised chunking"), so sizes cluster around the normal size. An edit moves only the
 * cut points near it, which is why a changed large file sends only a few chunks.
 *
 * The 64-bit hash is kept as two 32-bit halves: JavaScript's bit operators are 32-bit, and
 * BigInt would be ten times slower. The parameters are fixed (2 KiB / 8 KiB / 64 KiB and
 * the paper's masks) because both ends must cut identically: they are part of the
 * protocol (agent/PROTOCOL.md, "Chunking").
 */
import { GEAR_HIGH, GEAR_LOW } from "./gearTable.ts";

export const MIN_CHUNK = 2 * 1024;
export const NORMAL_CHUNK = 8 * 1024;
export const MAX_CHUNK = 64 * 1024;

// The paper's masks for an 8 KiB normal size: 15 one-bits before it, 11 after.
const MASK_SMALL_HIGH = 0x00035907;
const MASK_SMALL_LOW = 0x03530000;
const MASK_LARGE_HIGH = 0x0000d900;
const MASK_LARGE_LOW = 0x03530000;
// Signed copies: the inner loop then stays in int32, which V8 keeps in registers.
const GEAR_HIGH_I32 = Int32Array.from(GEAR_HIGH);
const GEAR_LOW_I32 = Int32Array.from(GEAR_LOW);

/**
 * The length of the chunk that starts at `start`, looking at no more than `available`
 * bytes. Pass everything up to the end of the input when fewer than MAX_CHUNK remain,
 * otherwise at least MAX_CHUNK bytes: the cut never depends on bytes beyond MAX_CHUNK.
 */
export function nextCut(data: Uint8Array, start: number, available: number): number {
  let n = available;
  if (n <= MIN_CHUNK) return n;
  let normal = NORMAL_CHUNK;
  if (n >= MAX_CHUNK) n = MAX_CHUNK;
  else if (n <= normal) normal = n;

  // fp = (fp << 1) + gear[byte] on 64 bits, as high:low int32 halves. The carry out of
  // the low half is computed with bit operations: a branch there mispredicts on random data.
  let high = 0;
  let low = 0;
  let p = start + MIN_CHUNK;
  const normalEnd = start + normal;
  const end = start + n;
  for (; p < normalEnd; p++) {
    const byte = data[p]!;
    const gearLow = GEAR_LOW_I32[byte]!;
    const shifted = low << 1;
    const sum = (shifted + gearLow) | 0;
    const carry = ((shifted & gearLow) | ((shifted | gearLow) & ~sum)) >>> 31;
    high = (((high << 1) | (low >>> 31)) + GEAR_HIGH_I32[byte]! + carry) | 0;
    low = sum;
    if (((high & MASK_SMALL_HIGH) | (low & MASK_SMALL_LOW)) === 0) return p - start;
  }
  for (; p < end; p++) {
    const byte = data[p]!;
    const gearLow = GEAR_LOW_I32[byte]!;
    const shifted = low << 1;
    const sum = (shifted + gearLow) | 0;
    const carry = ((shifted & gearLow) | ((shifted | gearLow) & ~sum)) >>> 31;
    high = (((high << 1) | (low >>> 31)) + GEAR_HIGH_I32[byte]! + carry) | 0;
    low = sum;
    if (((high & MASK_LARGE_HIGH) | (low & MASK_LARGE_LOW)) === 0) return p - start;
  }
  return p - start;
}

/** Every chunk length of a buffer held whole in memory. */
export function chunkLengths(data: Uint8Array): number[] {
  const lengths: number[] = [];
  for (let offset = 0; offset < data.length;) {
    const length = nextCut(data, offset, data.length - offset);
    lengths.push(length);
    offset += length;
  }
  return lengths;
}
