/**
 * `npm run wasm:generate`: compiles fastCdc.wat into fastCdc.wasm with wabt (a
 * devDependency: the agent loads the committed binary and needs no compiler).
 * wasmChunker.test.ts compiles it again to prove the committed binary current.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import wabtModule from "wabt";

const here = import.meta.dirname;
export const WAT_PATH = join(here, "fastCdc.wat");
export const WASM_PATH = join(here, "fastCdc.wasm");

/** The binary that fastCdc.wat compiles to, without debug names (deterministic). */
export async function compileFastCdcWasm(): Promise<Uint8Array> {
  const wabt = await wabtModule();
  const parsed = wabt.parseWat("fastCdc.wat", readFileSync(WAT_PATH, "utf8"));
  try {
    parsed.resolveNames();
    parsed.validate();
    return parsed.toBinary({ log: false, write_debug_names: false }).buffer;
  } finally {
    parsed.destroy();
  }
}

if (import.meta.main) {
  const binary = await compileFastCdcWasm();
  writeFileSync(WASM_PATH, binary);
  console.log(`wrote ${WASM_PATH} (${binary.length} bytes)`);
}
