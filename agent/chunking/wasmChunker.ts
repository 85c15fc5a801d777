/**
 * FastCDC's cut-point search in WebAssembly (fastCdc.wat): the same cuts as nextCut in
 * fastCdc.ts, several times faster, because WebAssembly has 64-bit integers. A chunker
 * owns a buffer inside its module's memory; callers read file data straight into it, so
 * no byte is copied to be chunked.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { GEAR_HIGH, GEAR_LOW } from "./gearTable.ts";

const GEAR_TABLE_BYTES = 256 * 8;
const wasmModule = new WebAssembly.Module(readFileSync(join(import.meta.dirname, "fastCdc.wasm")));

interface FastCdcExports {
  memory: WebAssembly.Memory;
  nextCut(start: number, available: number): number;
}

export class WasmChunker {
  /** Where callers put the bytes to chunk; valid as long as the chunker is. */
  readonly buffer: Buffer;
  private readonly exports: FastCdcExports;

  constructor(bufferSize: number) {
    // A small module: a fresh instance per chunker costs microseconds and shares nothing.
    this.exports = new WebAssembly.Instance(wasmModule).exports as unknown as FastCdcExports;
    const memory = this.exports.memory.buffer;
    if (GEAR_TABLE_BYTES + bufferSize > memory.byteLength) {
      throw new RangeError(`a chunker buffer of ${bufferSize} bytes does not fit the module's memory`);
    }
    const table = new DataView(memory, 0, GEAR_TABLE_BYTES);
    for (let i = 0; i < 256; i++) {
      table.setUint32(i * 8, GEAR_LOW[i]!, true);
      table.setUint32(i * 8 + 4, GEAR_HIGH[i]!, true);
    }
    this.buffer = Buffer.from(memory, GEAR_TABLE_BYTES, bufferSize);
  }

  /** nextCut (fastCdc.ts) for the chunk starting at `start` of this.buffer. */
  nextCut(start: number, available: number): number {
    return this.exports.nextCut(GEAR_TABLE_BYTES + start, available);
  }
}
