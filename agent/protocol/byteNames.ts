/**
 * File names are bytes (any but NUL and `/`), not text: an old upload can be named
 * `caf\xe9.txt` (Latin-1). The agent keeps every name and path as a JS string in one
 * lossless form (PROTOCOL.md, "Paths"): bytes that are UTF-8 are their characters, and
 * each byte of a sequence that is not UTF-8 is the lone surrogate U+DC80 + (byte - 0x80),
 * as Python's `surrogateescape` does. So a UTF-8 name is itself (the common case costs
 * nothing), and `caf\xe9.txt` is "caf\udce9.txt". The same string travels in the protocol's
 * JSON (version 2) and must become bytes again wherever it meets the file system: every
 * fs call on a tree path takes fsPath(path), never the string itself, because Node would
 * encode a lone surrogate as U+FFFD and name another file.
 */

const ESCAPE_BASE = 0xdc00;
/** A lone surrogate, or a pair; the fast check for "is anything escaped here". */
const SURROGATE = /[\ud800-\udfff]/;
const REPLACEMENT = "\ufffd";

/** Whether `bytes[i..]` starts a well-formed UTF-8 sequence (RFC 3629); its length or 0. */
function utf8SequenceLength(bytes: Uint8Array, i: number): number {
  const b0 = bytes[i]!;
  if (b0 < 0x80) return 1;
  const next = (k: number, low = 0x80, high = 0xbf) => {
    const b = bytes[i + k];
    return b !== undefined && b >= low && b <= high;
  };
  if (b0 >= 0xc2 && b0 <= 0xdf) return next(1) ? 2 : 0;
  if (b0 === 0xe0) return next(1, 0xa0) && next(2) ? 3 : 0;
  // 0xED 0xA0..0xBF would be a UTF-16 surrogate: not UTF-8.
  if (b0 === 0xed) return next(1, 0x80, 0x9f) && next(2) ? 3 : 0;
  if (b0 >= 0xe1 && b0 <= 0xef) return next(1) && next(2) ? 3 : 0;
  if (b0 === 0xf0) return next(1, 0x90) && next(2) && next(3) ? 4 : 0;
  if (b0 >= 0xf1 && b0 <= 0xf3) return next(1) && next(2) && next(3) ? 4 : 0;
  if (b0 === 0xf4) return next(1, 0x80, 0x8f) && next(2) && next(3) ? 4 : 0;
  return 0;
}

/** A name or path's bytes, as the kernel gives them, in the agent's string form. */
export function nameFromBytes(bytes: Uint8Array): string {
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("utf8");
  // Valid UTF-8 decodes without U+FFFD, unless the name holds U+FFFD itself.
  if (!text.includes(REPLACEMENT) || Buffer.from(text).equals(bytes)) return text;
  let out = "";
  let start = 0; // the start of a run of valid UTF-8, decoded in one go
  for (let i = 0; i < bytes.length;) {
    const length = utf8SequenceLength(bytes, i);
    if (length > 0) {
      i += length;
      continue;
    }
    out += Buffer.from(bytes.subarray(start, i)).toString("utf8");
    out += String.fromCharCode(ESCAPE_BASE + bytes[i]!);
    i += 1;
    start = i;
  }
  return out + Buffer.from(bytes.subarray(start)).toString("utf8");
}

/** The bytes of a string in the agent's form; throws on a surrogate that stands for no byte. */
export function bytesOfName(name: string): Buffer {
  if (!SURROGATE.test(name)) return Buffer.from(name);
  const parts: Buffer[] = [];
  let start = 0;
  for (let i = 0; i < name.length; i++) {
    const unit = name.charCodeAt(i);
    if (unit >= 0xd800 && unit <= 0xdbff) {
      const low = name.charCodeAt(i + 1);
      if (low >= 0xdc00 && low <= 0xdfff) {
        i++; // a pair: an ordinary character beyond U+FFFF
        continue;
      }
      throw new Error(`${JSON.stringify(name)} holds a lone surrogate U+${unit.toString(16).toUpperCase()}`);
    }
    if (unit < 0xdc00 || unit > 0xdfff) continue;
    if (unit < 0xdc80 || unit > 0xdcff)
      throw new Error(`${JSON.stringify(name)} holds a lone surrogate U+${unit.toString(16).toUpperCase()}`);
    parts.push(Buffer.from(name.slice(start, i)), Buffer.of(unit - ESCAPE_BASE));
    start = i + 1;
  }
  parts.push(Buffer.from(name.slice(start)));
  return Buffer.concat(parts);
}

/** Whether a string has escaped bytes (or is not in the agent's form at all). */
export function hasEscapedBytes(name: string): boolean {
  return SURROGATE.test(name) && /[\udc80-\udcff]/u.test(name);
}

/** What a file-system call takes for a path in the agent's form: the string, or its bytes. */
export function fsPath(path: string): string | Buffer {
  return SURROGATE.test(path) ? bytesOfName(path) : path;
}

/** Length in bytes on disk (an escaped byte is one byte, not the three of U+DCxx in UTF-8). */
export function byteLengthOfName(name: string): number {
  return SURROGATE.test(name) ? bytesOfName(name).length : Buffer.byteLength(name);
}

/**
 * Why `name` is not the agent's form of any byte string, or undefined when it is: a lone
 * surrogate that stands for no byte (U+D800–U+DC7F, U+DD00–U+DFFF), or escapes of bytes
 * that are UTF-8 (`\udcc3\udca9` for "é"), which would give one file two names.
 */
export function byteNameProblem(name: string): string | undefined {
  if (!SURROGATE.test(name)) return undefined;
  let bytes: Buffer;
  try {
    bytes = bytesOfName(name);
  } catch {
    return "it holds a lone UTF-16 surrogate that stands for no byte";
  }
  if (nameFromBytes(bytes) !== name) return "it escapes bytes that are valid UTF-8 (one file, two names)";
  return undefined;
}

/** A name for people: escaped bytes shown as \xNN (logs, errors, reports). */
export function printableName(name: string): string {
  return name.replace(/[\udc80-\udcff]/gu, (c) => `\\x${(c.charCodeAt(0) - ESCAPE_BASE).toString(16)}`);
}
