import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import fc from "fast-check";
import { compileFastCdcWasm, WASM_PATH } from "./compileWasm.ts";
import { chunkLengths } from "./fastCdc.ts";
import { WasmChunker } from "./wasmChunker.ts";

const SEED = Number(process.env.OFFSITE_PROPERTY_SEED ?? 20261123);
const testdata = join(import.meta.dirname, "testdata");

/** Every chunk length of `data`, cut by the WebAssembly chunker. */
function wasmChunkLengths(chunker: WasmChunker, data: Uint8Array): number[] {
  chunker.buffer.set(data);
  const lengths: number[] = [];
  for (let offset = 0; offset < data.length;) {
    const length = chunker.nextCut(offset, data.length - offset);
    lengths.push(length);
    offset += length;
  }
  return lengths;
}

describe("FastCDC in WebAssembly", () => {
  it("is compiled from the committed fastCdc.wat (npm run wasm:generate)", async () => {
    const compiled = Buffer.from(await compileFastCdcWasm());
    assert.ok(compiled.equals(readFileSync(WASM_PATH)), "fastCdc.wasm is stale: run npm run wasm:generate");
  });

  it("cuts go-cdc-chunkers' random vector exactly as published", () => {
    const { vectors } = JSON.parse(readFileSync(join(testdata, "vectors.json"), "utf8")) as {
      vectors: Record<string, { input_recipe: string; chunk_lengths: number[] }>;
    };
    const vector = Object.values(vectors).find((v) => v.input_recipe === "random-seed0")!;
    const input = readFileSync(join(testdata, "go-math-rand-seed0-204800.bin"));
    assert.deepEqual(wasmChunkLengths(new WasmChunker(1 << 20), input), vector.chunk_lengths);
  });

  it("cuts every input exactly where the TypeScript reference does", () => {
    const chunker = new WasmChunker(1 << 20);
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 20_000 }),
          fc.uint8Array({ minLength: 60_000, maxLength: 300_000 }),
          // Long runs of one byte: the Gear hash then repeats, the worst case for masks.
          fc
            .tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 1, max: 200_000 }))
            .map(([byte, length]) => new Uint8Array(length).fill(byte)),
        ),
        (data) => assert.deepEqual(wasmChunkLengths(chunker, data), chunkLengths(data)),
      ),
      { numRuns: 120, seed: SEED },
    );
  });

  it("refuses a buffer larger than its memory", () => {
    assert.throws(() => new WasmChunker(64 * 1024 * 1024), /does not fit/);
  });
});
