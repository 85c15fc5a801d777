// The few WebAssembly globals wasmChunker.ts uses. Node has them all, but TypeScript
// declares them only in its DOM libraries, which this Node-only project leaves out.
declare namespace WebAssembly {
  class Module {
    constructor(bytes: Uint8Array);
  }
  class Instance {
    constructor(module: Module, imports?: object);
    readonly exports: Record<string, unknown>;
  }
  class Memory {
    readonly buffer: ArrayBuffer;
  }
}
