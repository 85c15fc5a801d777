/**
 * What each frame carries (agent/PROTOCOL.md, "Messages"). JSON payloads are validated
 * with zod on receipt; Data is raw bytes and Copy a fixed binary record. decodeMessage
 * turns a Frame into a typed Message or throws a ProtocolError naming the problem.
 */
import { z } from "zod";
import { guidSchema } from "../../contract/guid.ts";
import { versionIdSchema } from "../../contract/versions.ts";
import { byteNameProblem, bytesOfName, nameFromBytes } from "./byteNames.ts";
import { decodePatch, decodeSignatures } from "./deltaFrames.ts";
import { decodeFileHeader, encodeFileHeader } from "./fileHeader.ts";
import { encodeFrame, type Frame, FrameType, frameTypeName, ProtocolError } from "./frames.ts";
import type { BlockSignature, PatchOp } from "../transfer/smallFileDelta.ts";

/**
 * The newest protocol version, and every one this agent speaks (PROTOCOL.md, "Versioning").
 * 2: names and symlink targets may hold bytes that are not UTF-8 (byteNames.ts), sparse
 * files, hard links, Abandon, replication. 3: the pusher's cache of the receiver's entries.
 */
export const PROTOCOL_VERSION = 3;
export const PROTOCOL_VERSIONS = [3, 2, 1] as const;
/**
 * The first version in which a receiver may withhold its entries from a pusher that has
 * them cached (Welcome's `digest`, EntriesWanted, Committed's `digest`).
 */
export const ENTRIES_CACHE_VERSION = 3;
/**
 * The first version whose pusher sends small files as BinaryFile (a binary header, no
 * JSON) and a large file's new chunks as HashedData, each with its hash, which the
 * receiver then need not compute (it still verifies the whole file at End).
 */
export const BINARY_FRAMES_VERSION = 3;
/** The first version with the small-file delta (SignatureRequest, Signatures, Patch). */
export const DELTA_VERSION = 3;
/** The first version whose paths may carry bytes that are not UTF-8, and that has Zeros frames. */
export const BYTE_NAMES_VERSION = 2;
export const ZEROS_VERSION = 2;
/** The first version with hard links (FileEntry.hardLink, the HardLink frame). */
export const HARD_LINKS_VERSION = 2;
/** The first version whose sender can abandon a large file it cannot read to the end. */
export const ABANDON_VERSION = 2;
/** The first version with the replicate role (Rename, Flush, Applied, Hello's epoch). */
export const REPLICATION_VERSION = 2;
/** Files up to this size travel whole in one File frame; larger ones as Begin/Data|Copy/End. */
export const INLINE_MAX = 64 * 1024;
/**
 * The key of Commit's `filtered` counts that counts the entries the client could not read
 * (PROTOCOL.md, "Messages"): a job with any is partial. It rides in the counts every
 * receiver of version 1 already accepts, so no new field and no new protocol version.
 */
export const UNREADABLE_COUNT = "unreadable";

const guid = guidSchema();
const sha256 = z.string().regex(/^[0-9a-f]{64}$/, "must be a lowercase hex SHA-256");
const size = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const mtime = z.number().int().min(0);
const mode = z.number().int().min(0).max(0o7777);
// Paths are checked for safety by the receiver (paths.ts); here only their shape.
const path = z.string().min(1).max(4096);
/** A symlink's target: any bytes but NUL (symlink(2) takes a C string), at most 4,096. */
const linkTarget = z
  .string()
  .min(1)
  .max(4096)
  .refine((target) => !target.includes("\0"), "a symlink target cannot contain a NUL byte")
  .refine(
    (target) => byteNameProblem(target) === undefined,
    "a symlink target must be bytes (PROTOCOL.md, Paths)",
  );
const versionId = versionIdSchema;

export const manifestEntry = z.discriminatedUnion("type", [
  z.strictObject({
    type: z.literal("file"),
    path,
    size,
    mtime,
    mode,
    sha256,
    /** [length, sha256] of each content-defined chunk, for files over INLINE_MAX. */
    chunks: z.array(z.tuple([z.number().int().min(1).max(INLINE_MAX), sha256])).optional(),
    /** The same file (inode) as this earlier entry of the version: hard-linked (version 2). */
    hardLink: path.optional(),
  }),
  z.strictObject({ type: z.literal("dir"), path, mtime, mode }),
  z.strictObject({ type: z.literal("symlink"), path, mtime, target: linkTarget }),
]);
export type ManifestEntry = z.infer<typeof manifestEntry>;
export type FileEntry = Extract<ManifestEntry, { type: "file" }>;

const schemas = {
  [FrameType.Hello]: z.strictObject({
    versions: z.array(z.number().int().min(1)).min(1).max(16),
    role: z.enum(["push", "compare", "restore", "replicate"]),
    site: guid,
    source: guid,
    /**
     * replicate: the pair's epoch, raised by every failover; a standby refuses a primary of
     * an older epoch (`stale-epoch`), so a demoted primary cannot write over the new one.
     */
    epoch: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
    /**
     * compare and restore: which version; absent means the current one. push: the version
     * whose entries the client has cached (version 3; older receivers ignore it for a push).
     */
    version: versionId.optional(),
    client: z.string().max(200),
  }),
  [FrameType.Welcome]: z.strictObject({
    version: z.number().int(),
    session: z.string().max(100),
    /** The version the job builds on (push) or reads (compare, restore); null when there is none. */
    base: versionId.nullable(),
    /** push: the entries include files staged by an interrupted job, which need not travel again. */
    resumed: z.boolean(),
    /**
     * push, version 3: the receiver withholds its entries, which are those of `base` with
     * this digest; the client uses its cache if that hashes to it, else asks (EntriesWanted).
     */
    digest: sha256.optional(),
  }),
  /** push, version 3: the client has no usable cache of the withheld entries; send them. */
  [FrameType.EntriesWanted]: z.strictObject({}),
  /** push, version 3: send the block signatures of these files of the base, in this order. */
  [FrameType.SignatureRequest]: z.strictObject({ paths: z.array(path).min(1).max(10_000) }),
  [FrameType.Entries]: z.strictObject({
    /** File entries come without `chunks` here; ChunkList frames carry them. */
    entries: z.array(manifestEntry).max(10_000),
  }),
  [FrameType.EntriesEnd]: z.strictObject({ count: size }),
  [FrameType.Begin]: z.strictObject({
    path,
    mtime,
    mode,
    /** Copy frames read from this file of the base version; defaults to `path`. */
    base: path.optional(),
    /** Resume a partly received file: its first `resumeAt` bytes are already staged. */
    resumeAt: size.optional(),
  }),
  [FrameType.End]: z.strictObject({ size, sha256 }),
  [FrameType.Directory]: z.strictObject({ path, mtime, mode }),
  [FrameType.Symlink]: z.strictObject({ path, mtime, target: linkTarget }),
  [FrameType.Delete]: z.strictObject({ path }),
  [FrameType.Link]: z.strictObject({ path, from: path, mtime, mode, sha256 }),
  /** `path` is another name of `to`, a file of this version earlier in path order (version 2). */
  [FrameType.HardLink]: z.strictObject({ path, to: path }),
  /** Inside Begin..End: the sender cannot read the rest; the file is not in this job (version 2). */
  [FrameType.Abandon]: z.strictObject({ reason: z.string().max(1000) }),
  [FrameType.Commit]: z.strictObject({
    files: size,
    bytes: size,
    /** Files the agent's filters or content firewall kept back, by reason. */
    filtered: z.record(z.string().max(100), size),
  }),
  [FrameType.Committed]: z.strictObject({
    version: versionId,
    files: size,
    bytesReceived: size,
    pruned: z.array(versionId),
    /** Version 3: the new version's entries digest, against which the client checks its cache. */
    digest: sha256.optional(),
  }),
  /** replicate: the standby's file `from` is now at `to` (a file or a directory with its contents). */
  [FrameType.Rename]: z.strictObject({ from: path, to: path }),
  /** replicate: make everything sent so far durable, then answer Applied with this `seq`. */
  [FrameType.Flush]: z.strictObject({ seq: size }),
  /**
   * replicate: everything before Flush `seq` is durable on the standby. `refused` lists the
   * files of those changes the standby's own content firewall stopped (kept out of its tree).
   */
  [FrameType.Applied]: z.strictObject({
    seq: size,
    refused: z.array(z.strictObject({ path, reason: z.string().max(200) })).max(10_000),
  }),
  [FrameType.Error]: z.strictObject({
    code: z.string().max(100),
    message: z.string().max(10_000),
    path: z.string().max(4096).optional(),
  }),
} as const;

type JsonType = keyof typeof schemas;
type JsonMessage<T extends JsonType> = { type: T } & z.infer<(typeof schemas)[T]>;

export type FileHeader = Omit<FileEntry, "type" | "chunks">;
export type Message =
  | { [T in JsonType]: JsonMessage<T> }[JsonType]
  | { type: typeof FrameType.File; header: FileHeader; content: Buffer }
  | { type: typeof FrameType.Data; bytes: Buffer }
  | { type: typeof FrameType.Copy; offset: number; length: number; sha256: string }
  | { type: typeof FrameType.Zeros; length: number }
  | { type: typeof FrameType.HashedData; sha256: string; bytes: Buffer }
  | { type: typeof FrameType.Signatures; path: string; signature: BlockSignature | undefined }
  | { type: typeof FrameType.Patch; header: FileHeader; blockSize: number; ops: PatchOp[] }
  | { type: typeof FrameType.ChunkList; kind: "entry" | "partial"; path: string; chunks: [number, string][] };
export type MessageOf<T extends Message["type"]> = Extract<Message, { type: T }>;

const fileHeader = z.strictObject({ path, size, mtime, mode, sha256 });
const COPY_LENGTH = 8 + 4 + 32;
const CHUNK_RECORD = 4 + 32;
const CHUNK_KINDS = ["entry", "partial"] as const;

function parseJson<T>(schema: z.ZodType<T>, payload: Buffer, what: string): T {
  let value: unknown;
  try {
    value = JSON.parse(payload.toString("utf8"));
  } catch {
    throw new ProtocolError("bad-message", `${what} frame is not valid JSON`);
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new ProtocolError(
      "bad-message",
      `${what} frame: ${issue.path.join(".") || "(root)"}: ${issue.message}`,
    );
  }
  return parsed.data;
}

export function decodeMessage(frame: Frame): Message {
  const name = frameTypeName(frame.type);
  switch (frame.type) {
    case FrameType.Data:
      if (frame.payload.length === 0 || frame.payload.length > INLINE_MAX) {
        throw new ProtocolError(
          "bad-message",
          `Data frame of ${frame.payload.length} bytes (1..${INLINE_MAX})`,
        );
      }
      return { type: FrameType.Data, bytes: frame.payload };
    case FrameType.Copy: {
      if (frame.payload.length !== COPY_LENGTH) {
        throw new ProtocolError(
          "bad-message",
          `Copy frame of ${frame.payload.length} bytes (${COPY_LENGTH})`,
        );
      }
      const offset = Number(frame.payload.readBigUInt64BE(0));
      const length = frame.payload.readUInt32BE(8);
      if (length === 0 || length > INLINE_MAX || !Number.isSafeInteger(offset)) {
        throw new ProtocolError("bad-message", `Copy frame with offset ${offset} and length ${length}`);
      }
      return { type: FrameType.Copy, offset, length, sha256: frame.payload.subarray(12).toString("hex") };
    }
    case FrameType.Zeros: {
      if (frame.payload.length !== 4) {
        throw new ProtocolError("bad-message", `Zeros frame of ${frame.payload.length} bytes (4)`);
      }
      const length = frame.payload.readUInt32BE(0);
      if (length === 0 || length > INLINE_MAX) {
        throw new ProtocolError("bad-message", `Zeros frame for ${length} bytes (1..${INLINE_MAX})`);
      }
      return { type: FrameType.Zeros, length };
    }
    case FrameType.ChunkList: {
      const payload = frame.payload;
      const kind = CHUNK_KINDS[payload[0] ?? 255];
      const pathLength = payload.length >= 3 ? payload.readUInt16BE(1) : -1;
      const records = payload.length - 3 - pathLength;
      if (!kind || pathLength < 1 || records < 0 || records % CHUNK_RECORD !== 0) {
        throw new ProtocolError("bad-message", "ChunkList frame with a bad kind, path length or record size");
      }
      const chunks: [number, string][] = [];
      for (let offset = 3 + pathLength; offset < payload.length; offset += CHUNK_RECORD) {
        const length = payload.readUInt32BE(offset);
        if (length === 0 || length > INLINE_MAX) {
          throw new ProtocolError("bad-message", `ChunkList frame with a chunk of ${length} bytes`);
        }
        chunks.push([length, payload.subarray(offset + 4, offset + CHUNK_RECORD).toString("hex")]);
      }
      return {
        type: FrameType.ChunkList,
        kind,
        path: nameFromBytes(payload.subarray(3, 3 + pathLength)),
        chunks,
      };
    }
    case FrameType.BinaryFile:
      return decodeBinaryFile(frame.payload);
    case FrameType.HashedData:
      return decodeHashedData(frame.payload);
    case FrameType.Signatures:
      return { type: FrameType.Signatures, ...decodeSignatures(frame.payload) };
    case FrameType.Patch:
      return { type: FrameType.Patch, ...decodePatch(frame.payload) };
    case FrameType.File: {
      if (frame.payload.length < 4) throw new ProtocolError("bad-message", "File frame without a header");
      const headerLength = frame.payload.readUInt32BE(0);
      if (headerLength > frame.payload.length - 4) {
        throw new ProtocolError(
          "bad-message",
          `File frame header of ${headerLength} bytes overruns the frame`,
        );
      }
      const header = parseJson(fileHeader, frame.payload.subarray(4, 4 + headerLength), name);
      const content = frame.payload.subarray(4 + headerLength);
      if (content.length !== header.size || header.size > INLINE_MAX) {
        throw new ProtocolError(
          "bad-message",
          `File frame for ${JSON.stringify(header.path)} carries ${content.length} bytes but declares ${header.size}`,
        );
      }
      return { type: FrameType.File, header, content };
    }
    default: {
      const schema = schemas[frame.type] as z.ZodType<object>;
      return { type: frame.type, ...parseJson(schema, frame.payload, name) } as Message;
    }
  }
}

/**
 * BinaryFile (version 3): `uint16 path length | path (its bytes) | uint32 size | uint64
 * mtime | uint16 mode | 32 bytes SHA-256 | content`. It decodes to the same message as a
 * File frame, checked as strictly as the File header's schema checks its JSON.
 */
function decodeBinaryFile(payload: Buffer): Message {
  const { header, end } = decodeFileHeader(payload, "BinaryFile");
  const content = payload.subarray(end);
  if (content.length !== header.size) {
    throw new ProtocolError(
      "bad-message",
      `BinaryFile frame for ${JSON.stringify(header.path)} carries ${content.length} bytes but declares ${header.size}`,
    );
  }
  return { type: FrameType.File, header, content };
}

/** HashedData (version 3): `32 bytes SHA-256 | 1..65,536 bytes`: the next chunk, with its hash. */
function decodeHashedData(payload: Buffer): Message {
  const length = payload.length - 32;
  if (length < 1 || length > INLINE_MAX) {
    throw new ProtocolError(
      "bad-message",
      `HashedData frame of ${payload.length} bytes (33..${32 + INLINE_MAX})`,
    );
  }
  return {
    type: FrameType.HashedData,
    sha256: payload.subarray(0, 32).toString("hex"),
    bytes: payload.subarray(32),
  };
}

/** A BinaryFile frame's payload as parts (header, content) for FramedConnection.sendParts. */
export function binaryFilePayload(header: FileHeader, content: Uint8Array): Uint8Array[] {
  return [encodeFileHeader(header), content];
}

type JsonBody<T extends JsonType> = Omit<JsonMessage<T>, "type">;

export function encodeJson<T extends JsonType>(type: T, body: JsonBody<T>): Buffer {
  return encodeFrame(type, Buffer.from(JSON.stringify(body)));
}

/**
 * A File frame's payload as parts — the header's length and JSON, then the content — for
 * FramedConnection.sendParts, which copies the content once, straight into its outgoing
 * buffer (the small-file hot path).
 */
export function filePayload(header: FileHeader, content: Uint8Array): Uint8Array[] {
  const json = JSON.stringify(header);
  const jsonLength = Buffer.byteLength(json);
  const head = Buffer.allocUnsafe(4 + jsonLength);
  head.writeUInt32BE(jsonLength, 0);
  head.write(json, 4, "utf8");
  return [head, content];
}

/** A File frame as one buffer (tests and tools; the agent sends filePayload's parts). */
export function encodeFile(header: FileHeader, content: Uint8Array): Buffer {
  return encodeFrame(FrameType.File, Buffer.concat(filePayload(header, content)));
}

export function encodeCopy(offset: number, length: number, sha256hex: string): Buffer {
  const payload = Buffer.allocUnsafe(COPY_LENGTH);
  payload.writeBigUInt64BE(BigInt(offset), 0);
  payload.writeUInt32BE(length, 8);
  payload.write(sha256hex, 12, "hex");
  return encodeFrame(FrameType.Copy, payload);
}

/** A chunk of zero bytes: a hole, neither sent nor stored as data (PROTOCOL.md, "Sparse files"). */
export function encodeZeros(length: number): Buffer {
  const payload = Buffer.allocUnsafe(4);
  payload.writeUInt32BE(length, 0);
  return encodeFrame(FrameType.Zeros, payload);
}

/** A file's chunk list as ChunkList frames, as many as its length needs. */
export function encodeChunkList(
  kind: "entry" | "partial",
  path: string,
  chunks: [number, string][],
): Buffer[] {
  const pathBytes = bytesOfName(path);
  const perFrame = Math.floor((1024 * 1024 - 3 - pathBytes.length) / CHUNK_RECORD);
  const frames: Buffer[] = [];
  for (let start = 0; start < chunks.length || start === 0; start += perFrame) {
    const slice = chunks.slice(start, start + perFrame);
    const payload = Buffer.allocUnsafe(3 + pathBytes.length + slice.length * CHUNK_RECORD);
    payload[0] = CHUNK_KINDS.indexOf(kind);
    payload.writeUInt16BE(pathBytes.length, 1);
    pathBytes.copy(payload, 3);
    slice.forEach(([length, hash], i) => {
      const offset = 3 + pathBytes.length + i * CHUNK_RECORD;
      payload.writeUInt32BE(length, offset);
      payload.write(hash, offset + 4, "hex");
    });
    frames.push(encodeFrame(FrameType.ChunkList, payload));
    if (chunks.length === 0) break;
  }
  return frames;
}
