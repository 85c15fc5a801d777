/**
 * The agent-side filters (PROTOCOL.md does not see them: filtered data never leaves the
 * source), with the options of contract/filters.ts. Globs match the path relative to the
 * source root with `path.matchesGlob` (`**` crosses directories). Every file kept back
 * is reported with its reason.
 */
import { closeSync, constants, openSync, readSync } from "node:fs";
import { extname, matchesGlob } from "node:path";
import { NO_FILTERS, SCRIPT_EXTENSIONS, type FilterOptions } from "../../contract/filters.ts";
import { fsPath } from "../protocol/byteNames.ts";

export { NO_FILTERS, type FilterOptions };

export type FilterReason =
  "excluded" | "not-included" | "too-large" | "firewall-executable" | "firewall-script" | "firewall-pattern";

const matchesAny = (path: string, globs: string[]) => globs.some((glob) => matchesGlob(path, glob));
const scriptExtensions = new Set(SCRIPT_EXTENSIONS);

export function excludedPath(path: string, options: FilterOptions): boolean {
  return options.exclude.length > 0 && matchesAny(path, options.exclude);
}

/**
 * Why a regular file that is not excluded (the scan checks excludedPath first, for every
 * type, before it looks at the entry) is kept back, or undefined when it is selected.
 * `absolute` is read only for the firewall, and that read may throw (EACCES, ELOOP...): the
 * scan reports the file as a problem. The firewall's order: an allow pattern lets a file
 * through, then block patterns, then the script extension, then the content (first four
 * bytes).
 */
export function fileFilterReason(
  path: string,
  size: number,
  absolute: string,
  options: FilterOptions,
): FilterReason | undefined {
  if (options.include.length > 0 && !matchesAny(path, options.include)) return "not-included";
  if (options.maxFileSize !== undefined && size > options.maxFileSize) return "too-large";
  const firewall = options.firewall;
  if (!firewall.enabled || matchesAny(path, firewall.allowPatterns)) return undefined;
  if (matchesAny(path, firewall.blockPatterns)) return "firewall-pattern";
  if (firewall.blockScripts && scriptExtensions.has(extname(path).toLowerCase())) return "firewall-script";
  if (!firewall.blockScripts && !firewall.blockExecutables) return undefined;
  const kind = executableKind(readHead(absolute));
  if (kind === "script") return firewall.blockScripts ? "firewall-script" : undefined;
  if (kind) return firewall.blockExecutables ? "firewall-executable" : undefined;
  return undefined;
}

/** How much of a file the firewall reads: enough for a PHP opening behind an image header. */
export const FIREWALL_HEAD_BYTES = 1024;

function readHead(path: string): Buffer {
  const head = Buffer.alloc(FIREWALL_HEAD_BYTES);
  // Never through a link swapped in since the lstat, never blocking on a FIFO.
  const fd = openSync(fsPath(path), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  try {
    const read = readSync(fd, head, 0, FIREWALL_HEAD_BYTES, 0);
    return head.subarray(0, read);
  } finally {
    closeSync(fd);
  }
}

/**
 * Server-side script openings. Long ones anywhere in the head (a web shell hides behind a
 * GIF89a header); the short ones only at the start, where text begins, because three
 * random bytes match somewhere in one binary file of a few thousand (photos would be stopped).
 */
const SERVER_SCRIPT_ANYWHERE = /<\?php|<script\s+runat\s*=\s*["']?server/i;
const SERVER_SCRIPT_AT_START = /^(?:\xef\xbb\xbf)?\s*(?:<\?=|<%)/;

/**
 * What the content firewall looks for in a file's first bytes (FIREWALL_HEAD_BYTES): ELF,
 * PE (MZ), Mach-O (both byte orders, 32/64-bit and universal), a `#!` script, and a
 * server-side script opening (PHP `<?php` or `<script runat=server>` anywhere in them; PHP's
 * `<?=`, ASP's and JSP's `<%` at the start). Content, not names: renaming a binary or a PHP shell to
 * photo.jpg does not get it through.
 */
export function executableKind(head: Uint8Array): "elf" | "pe" | "mach-o" | "script" | undefined {
  if (head.length >= 2 && head[0] === 0x23 && head[1] === 0x21) return "script";
  const text = Buffer.from(head).toString("latin1");
  if (SERVER_SCRIPT_ANYWHERE.test(text) || SERVER_SCRIPT_AT_START.test(text)) return "script";
  if (head.length >= 2 && head[0] === 0x4d && head[1] === 0x5a) return "pe";
  if (head.length < 4) return undefined;
  const magic = Buffer.from(head.subarray(0, 4)).readUInt32BE(0);
  if (magic === 0x7f454c46) return "elf";
  if ([0xfeedface, 0xfeedfacf, 0xcefaedfe, 0xcffaedfe, 0xcafebabe, 0xbebafeca].includes(magic))
    return "mach-o";
  return undefined;
}
