/**
 * `npm run wasm:generate`: compiles fastCdc.wat into fastCdc.wasm with wabt (a
 * devDependency: the agent loads the committed binary and needs no compiler). With
 * --check it only says whether the committed binary is current (exit 1 when stale).
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
  if (process.argv.includes("--check")) {
    const current = Buffer.from(binary).equals(readFileSync(WASM_PATH));
    console.log(current ? "fastCdc.wasm is current" : "fastCdc.wasm is stale: run npm run wasm:generate");
    process.exitCode = current ? 0 : 1;
  } else {
    writeFileSync(WASM_PATH, binary);
    console.log(`wrote ${WASM_PATH} (${binary.length} bytes)`);
  }
}
