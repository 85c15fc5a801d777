/**
 * Append-only columns stored in fixed blocks, for the scan's million-entry trees. A JS
 * array that grows copies itself into one half again as large, and the old and the new
 * copy are both alive while it does: for B8's million files that transient, across the
 * scan's columns, was most of the peak RSS above the final heap. Blocks are never
 * copied, and numbers sit in typed arrays at their natural width (a mode in 2 bytes, not
 * an 8-byte array slot).
 */
const BLOCK_BITS = 14;
const BLOCK = 1 << BLOCK_BITS;
const IN_BLOCK = BLOCK - 1;

type NumberBlock = Float64Array | Uint16Array | Uint8Array;

/** Numbers of one kind: Float64Array for sizes, times and inodes, smaller for the rest. */
export class NumberColumn {
  private readonly blocks: NumberBlock[] = [];
  private readonly makeBlock: (length: number) => NumberBlock;
  length = 0;

  constructor(makeBlock: (length: number) => NumberBlock) {
    this.makeBlock = makeBlock;
  }

  push(value: number): void {
    const index = this.length++;
    if ((index & IN_BLOCK) === 0) this.blocks.push(this.makeBlock(BLOCK));
    this.blocks[index >>> BLOCK_BITS]![index & IN_BLOCK] = value;
  }

  at(index: number): number {
    return this.blocks[index >>> BLOCK_BITS]![index & IN_BLOCK]!;
  }
}

export class StringColumn implements Iterable<string> {
  private readonly blocks: string[][] = [];
  length = 0;

  push(value: string): void {
    const index = this.length++;
    if ((index & IN_BLOCK) === 0) this.blocks.push([]);
    this.blocks[index >>> BLOCK_BITS]!.push(value);
  }

  at(index: number): string {
    return this.blocks[index >>> BLOCK_BITS]![index & IN_BLOCK]!;
  }

  *[Symbol.iterator](): Iterator<string> {
    for (const block of this.blocks) yield* block;
  }
}
