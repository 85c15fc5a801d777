/**
 * Paths on the wire are relative POSIX paths inside a source's tree (PROTOCOL.md, "Paths"),
 * byte strings in byteNames.ts's lossless string form.
 * Whoever writes to disk — the receiver, and the client of a restore — checks every path
 * with checkRelativePath before touching the file system, so no peer can make it write
 * outside its directory.
 */
import { byteLengthOfName, byteNameProblem } from "./byteNames.ts";
import { ProtocolError } from "./frames.ts";

export const MAX_PATH_BYTES = 4096;
export const MAX_NAME_BYTES = 255;

/** Throws ProtocolError("bad-path") unless `path` is a safe relative path; returns it. */
export function checkRelativePath(path: string): string {
  const problem = relativePathProblem(path);
  if (problem) throw new ProtocolError("bad-path", `refused path ${JSON.stringify(path)}: ${problem}`);
  return path;
}

export function relativePathProblem(path: string): string | undefined {
  if (path.length === 0) return "it is empty";
  if (path.includes("\0")) return "it contains a NUL byte";
  // Names are bytes (byteNames.ts): a lone surrogate must stand for one byte, canonically.
  const bytes = byteNameProblem(path);
  if (bytes) return bytes;
  if (byteLengthOfName(path) > MAX_PATH_BYTES) return `it is longer than ${MAX_PATH_BYTES} bytes`;
  if (path.startsWith("/")) return "it is absolute";
  for (const name of path.split("/")) {
    if (name === "") return "it has an empty component (// or a trailing /)";
    if (name === "." || name === "..") return `it has a ${name} component`;
    if (byteLengthOfName(name) > MAX_NAME_BYTES) return `a name is longer than ${MAX_NAME_BYTES} bytes`;
  }
  return undefined;
}

/** The parent directory of a relative path, or undefined at the top: "a/b/c" → "a/b". */
export function parentOf(path: string): string | undefined {
  const slash = path.lastIndexOf("/");
  return slash < 0 ? undefined : path.slice(0, slash);
}

/**
 * Path order, the order of every stream of entries (a manifest, Entries, a restore): a
 * directory comes right before its contents ("a", "a/b", "a-c").
 */
export function comparePaths(a: string, b: string): number {
  // The order of the strings with "/" as the lowest code unit (a path holds no NUL),
  // compared in place: sorting a large tree's entries calls this a million times.
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return (x === 0x2f ? 0 : x) < (y === 0x2f ? 0 : y) ? -1 : 1;
  }
  return a.length === b.length ? 0 : a.length < b.length ? -1 : 1;
}

/** The parent directories of a relative path, outermost first: "a/b/c" → ["a", "a/b"]. */
export function parentsOf(path: string): string[] {
  const names = path.split("/");
  return names.slice(0, -1).map((_, i) => names.slice(0, i + 1).join("/"));
}
