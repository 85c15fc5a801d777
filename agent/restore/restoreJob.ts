/**
 * `offsite restore`: brings a version back into a directory. Every file is written to a
 * temporary name, verified against the SHA-256 the receiver sent, then renamed into place
 * with its mode and mtime. Paths are checked like the receiver checks them, parents are
 * real directories we made, and symlinks are created last, so nothing the stream says can
 * write outside the destination or through a link.
 */
import { createHash, type Hash } from "node:crypto";
import {
  chmodSync,
  closeSync,
  fsyncSync,
  lstatSync,
  mkdirSync,
  openSync,
  renameSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeSync,
} from "node:fs";
import { join, resolve } from "node:path";
import { openSession, type Endpoint } from "../client/openSession.ts";
import { FrameType, ProtocolError } from "../protocol/frames.ts";
import { checkRelativePath, parentsOf } from "../protocol/paths.ts";

export interface RestoreOptions {
  endpoint: Endpoint;
  site: string;
  sourceId: string;
  version?: string;
  destination: string;
}

export interface RestoreReport {
  version: string;
  files: number;
  bytes: number;
  directories: number;
  symlinks: number;
}

export async function restoreJob(options: RestoreOptions): Promise<RestoreReport> {
  const destination = resolve(options.destination);
  mkdirSync(destination, { recursive: true });
  const session = await openSession(options.endpoint, {
    role: "restore",
    site: options.site,
    source: options.sourceId,
    ...(options.version ? { version: options.version } : {}),
  });
  const { connection } = session;
  const report: RestoreReport = {
    version: session.welcome.base!,
    files: 0,
    bytes: 0,
    directories: 0,
    symlinks: 0,
  };
  const directories: { path: string; mtime: number; mode: number }[] = [];
  const symlinks: { path: string; target: string; mtime: number }[] = [];
  const temporary = join(destination, `.offsite-restore-${process.pid}.tmp`);
  let open: { path: string; mtime: number; mode: number; fd: number; hash: Hash; size: number } | undefined;

  const prepare = (path: string) => {
    checkRelativePath(path);
    for (const parent of parentsOf(path)) {
      const dir = join(destination, parent);
      const stat = lstatOrUndefined(dir);
      if (stat?.isDirectory()) continue;
      if (stat)
        throw new ProtocolError("bad-path", `${parent} exists in the destination and is not a directory`);
      mkdirSync(dir);
    }
    return join(destination, path);
  };
  const place = (path: string, mtime: number, mode: number) => {
    const target = prepare(path);
    if (lstatOrUndefined(target)?.isDirectory()) rmSync(target, { recursive: true });
    chmodSync(temporary, mode & 0o7777);
    utimesSync(temporary, mtime / 1000, mtime / 1000);
    renameSync(temporary, target);
  };

  try {
    for (;;) {
      const message = await connection.next();
      if (message.type === FrameType.Commit) break;
      switch (message.type) {
        case FrameType.Directory: {
          const target = prepare(message.path);
          if (!lstatOrUndefined(target)?.isDirectory()) mkdirSync(target);
          directories.push(message);
          report.directories++;
          break;
        }
        case FrameType.Symlink:
          checkRelativePath(message.path);
          symlinks.push(message);
          break;
        case FrameType.File: {
          const sha256 = createHash("sha256").update(message.content).digest("hex");
          if (sha256 !== message.header.sha256) {
            throw new ProtocolError(
              "hash-mismatch",
              `${message.header.path} arrived damaged (hash ${sha256})`,
            );
          }
          writeWhole(temporary, message.content);
          place(message.header.path, message.header.mtime, message.header.mode);
          report.files++;
          report.bytes += message.content.length;
          break;
        }
        case FrameType.Begin:
          checkRelativePath(message.path);
          open = {
            path: message.path,
            mtime: message.mtime,
            mode: message.mode,
            fd: openSync(temporary, "w", 0o600),
            hash: createHash("sha256"),
            size: 0,
          };
          break;
        case FrameType.Data:
          if (!open) throw new ProtocolError("unexpected-frame", "Data outside Begin..End");
          writeSync(open.fd, message.bytes);
          open.hash.update(message.bytes);
          open.size += message.bytes.length;
          break;
        case FrameType.End: {
          if (!open) throw new ProtocolError("unexpected-frame", "End without Begin");
          fsyncSync(open.fd);
          closeSync(open.fd);
          const sha256 = open.hash.digest("hex");
          if (sha256 !== message.sha256 || open.size !== message.size) {
            throw new ProtocolError("hash-mismatch", `${open.path} arrived damaged (hash ${sha256})`);
          }
          place(open.path, open.mtime, open.mode);
          report.files++;
          report.bytes += open.size;
          open = undefined;
          break;
        }
        default:
          throw new ProtocolError("unexpected-frame", `frame ${message.type} has no place in a restore`);
      }
    }
    for (const link of symlinks) {
      const target = prepare(link.path);
      rmSync(target, { recursive: true, force: true });
      symlinkSync(link.target, target);
      report.symlinks++;
    }
    // Directory metadata last: writing into a directory changes its mtime.
    for (const dir of directories.reverse()) {
      const target = join(destination, dir.path);
      chmodSync(target, dir.mode & 0o7777);
      utimesSync(target, dir.mtime / 1000, dir.mtime / 1000);
    }
    return report;
  } finally {
    if (open) closeSync(open.fd);
    rmSync(temporary, { force: true });
    await connection.close();
  }
}

function writeWhole(path: string, content: Buffer): void {
  const fd = openSync(path, "w", 0o600);
  try {
    writeSync(fd, content);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function lstatOrUndefined(path: string) {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}
