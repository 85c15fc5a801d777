import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  encodeFrame,
  FrameDecoder,
  FrameType,
  frameTypeName,
  MAX_FRAME_LENGTH,
  ProtocolError,
} from "./frames.ts";
import {
  binaryFilePayload,
  decodeMessage,
  encodeChunkList,
  encodeCopy,
  encodeFile,
  encodeJson,
  type Message,
} from "./messages.ts";
import { checkRelativePath, relativePathProblem } from "./paths.ts";
import { encodePatch, encodeSignatures } from "./deltaFrames.ts";
import { signatureOf } from "../transfer/smallFileDelta.ts";

const KNOWN = Object.values(FrameType) as number[];

/** Feeds bytes in the given slices; returns decoded messages and the first error. */
function decodeAll(bytes: Buffer, slices: number[]): { messages: Message[]; error?: unknown } {
  const decoder = new FrameDecoder();
  const messages: Message[] = [];
  let offset = 0;
  try {
    for (const size of [...slices, bytes.length]) {
      decoder.push(bytes.subarray(offset, Math.min(bytes.length, offset + size)));
      offset = Math.min(bytes.length, offset + size);
      for (let frame = decoder.next(); frame; frame = decoder.next()) messages.push(decodeMessage(frame));
      // Never more than one frame (plus a header) is held back.
      assert.ok(decoder.bufferedBytes <= MAX_FRAME_LENGTH + 4 + size);
    }
  } catch (error) {
    return { messages, error };
  }
  return { messages };
}

/**
 * 10,000 frames of one type with payloads from `payload`: each decodes to messages that
 * pass `check`, or fails with a ProtocolError; enough of both happen.
 */
function fuzzOneType(
  type: FrameType,
  payload: fc.Arbitrary<Buffer>,
  check: (message: Message) => void,
): void {
  let decoded = 0;
  let refused = 0;
  fc.assert(
    fc.property(payload, (bytes) => {
      const { messages, error } = decodeAll(encodeFrame(type, bytes), []);
      if (error !== undefined) {
        assert.ok(error instanceof ProtocolError, `not a ProtocolError: ${(error as Error).stack}`);
        refused++;
      }
      for (const message of messages) {
        check(message);
        decoded++;
      }
    }),
    { numRuns: 10_000 },
  );
  assert.ok(decoded > 100 && refused > 1000, `decoded ${decoded}, refused ${refused}`);
}

describe("the frame parser", () => {
  it("round-trips every message kind, whatever the slicing of the stream", () => {
    const content = Buffer.from("hello");
    const frames = [
      encodeJson(FrameType.Hello, {
        versions: [1],
        role: "push",
        site: "0b8a2f4e-1c2d-4e5f-8a9b-0c1d2e3f4a5b",
        source: "7d3c9e21-5b6a-4c8d-9e0f-1a2b3c4d5e6f",
        client: "test",
      }),
      encodeFile({ path: "a/b.txt", size: 5, mtime: 1, mode: 0o644, sha256: "a".repeat(64) }, content),
      encodeFrame(FrameType.Data, Buffer.alloc(65536, 1)),
      encodeCopy(2 ** 40, 4096, "b".repeat(64)),
      encodeJson(FrameType.End, { size: 70000, sha256: "c".repeat(64) }),
      ...encodeChunkList("entry", "big/file.bin", [
        [65536, "d".repeat(64)],
        [2048, "e".repeat(64)],
      ]),
      encodeJson(FrameType.Error, { code: "x", message: "y" }),
    ];
    const stream = Buffer.concat(frames);
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 5000 }), { maxLength: 40 }), (slices) => {
        const { messages, error } = decodeAll(stream, slices);
        assert.equal(error, undefined);
        assert.deepEqual(
          messages.map((m) => m.type),
          [0x01, 0x10, 0x12, 0x13, 0x14, 0x05, 0x7f],
        );
        const list = messages[5] as Extract<Message, { type: 0x05 }>;
        assert.deepEqual(list.chunks, [
          [65536, "d".repeat(64)],
          [2048, "e".repeat(64)],
        ]);
        assert.equal(list.path, "big/file.bin");
        const copy = messages[3] as Extract<Message, { type: 0x13 }>;
        assert.equal(copy.offset, 2 ** 40);
        assert.equal(copy.length, 4096);
      }),
      { numRuns: 200 },
    );
  });

  it("survives 10,000 random frames: each decodes or fails with a ProtocolError, never anything else", () => {
    const randomFrame = fc.oneof(
      // Raw garbage.
      fc.uint8Array({ maxLength: 300 }).map((bytes) => Buffer.from(bytes)),
      // A well-formed header with a known type and a random payload.
      fc
        .tuple(fc.constantFrom(...KNOWN), fc.uint8Array({ maxLength: 300 }))
        .map(([type, payload]) => encodeFrame(type as FrameType, payload)),
      // A known type with JSON that almost fits.
      fc
        .tuple(fc.constantFrom(...KNOWN), fc.jsonValue({ maxDepth: 3 }))
        .map(([type, value]) => encodeFrame(type as FrameType, Buffer.from(JSON.stringify(value) ?? "null"))),
      // A hostile length field.
      fc
        .tuple(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 255 }))
        .map(([length, type]) => {
          const header = Buffer.alloc(5);
          header.writeUInt32BE(length, 0);
          header[4] = type;
          return header;
        }),
    );
    let decoded = 0;
    let refused = 0;
    fc.assert(
      fc.property(
        randomFrame,
        fc.array(fc.integer({ min: 1, max: 64 }), { maxLength: 8 }),
        (frame, slices) => {
          const { messages, error } = decodeAll(frame, slices);
          if (error !== undefined) {
            assert.ok(error instanceof ProtocolError, `not a ProtocolError: ${(error as Error).stack}`);
            assert.match(error.code, /^[a-z-]+$/);
            refused++;
          }
          decoded += messages.length;
        },
      ),
      { numRuns: 10_000 },
    );
    assert.ok(refused > 1000 && decoded > 0, `refused ${refused}, decoded ${decoded}`);
  });

  /**
   * The frames and fields of protocol version 3 (PROTOCOL.md, "Versioning"), each fuzzed on
   * its own: 10,000 payloads per frame type, from random bytes to a valid message with one
   * field dropped, added, or given a value of another kind. Each decodes to a message whose
   * fields have their types, or fails with a ProtocolError.
   */
  const VERSION_3_FRAMES: { type: FrameType; valid: Record<string, unknown>; check: (m: Message) => void }[] =
    [
      {
        type: FrameType.SignatureRequest,
        valid: { paths: ["a/b.txt", "c\udce9"] },
        check: (m) => {
          const { paths } = m as unknown as { paths: unknown[] };
          assert.ok(paths.length >= 1 && paths.every((p) => typeof p === "string" && p.length > 0));
        },
      },
      { type: FrameType.EntriesWanted, valid: {}, check: (m) => assert.deepEqual(Object.keys(m), ["type"]) },
      {
        type: FrameType.Welcome,
        valid: { version: 3, session: "s", base: "20261202T151314Z", resumed: false, digest: "d".repeat(64) },
        check: (m) => {
          const { digest } = m as { digest?: unknown };
          assert.ok(digest === undefined || /^[0-9a-f]{64}$/.test(digest as string), String(digest));
        },
      },
      {
        type: FrameType.Committed,
        valid: {
          version: "20261202T151314Z-2",
          files: 1,
          bytesReceived: 0,
          pruned: [],
          digest: "e".repeat(64),
        },
        check: (m) => {
          const { digest, version } = m as { digest?: unknown; version?: unknown };
          assert.ok(digest === undefined || /^[0-9a-f]{64}$/.test(digest as string), String(digest));
          assert.match(version as string, /^[0-9]{8}T[0-9]{6}Z(-[0-9]+)?$/);
        },
      },
    ];
  for (const { type, valid, check } of VERSION_3_FRAMES) {
    it(`survives 10,000 random ${frameTypeName(type)} frames of version 3`, () => {
      const keys = Object.keys(valid);
      const payload = fc.oneof(
        fc.uint8Array({ maxLength: 200 }).map((bytes) => Buffer.from(bytes)),
        fc.jsonValue({ maxDepth: 2 }).map((value) => Buffer.from(JSON.stringify(value) ?? "null")),
        // The valid message with one field dropped, replaced by any value, or one added.
        fc
          .tuple(fc.constantFrom(...keys, "extra"), fc.option(fc.jsonValue({ maxDepth: 1 })))
          .map(([key, value]) => {
            const mutated: Record<string, unknown> = { ...valid };
            if (value === null) delete mutated[key];
            else mutated[key] = value;
            return Buffer.from(JSON.stringify(mutated));
          }),
        fc.constant(Buffer.from(JSON.stringify(valid))),
      );
      fuzzOneType(type, payload, (message) => {
        assert.equal(message.type, type);
        check(message);
      });
    });
  }

  const VERSION_3_BINARY_FRAMES: { type: FrameType; valid: Buffer; check: (m: Message) => void }[] = [
    {
      type: FrameType.Signatures,
      valid: encodeSignatures("a/b.txt", signatureOf(Buffer.alloc(1_000, 3))).subarray(5),
      check: (m) => {
        assert.equal(m.type, FrameType.Signatures);
        const { signature } = m;
        if (!signature) return;
        assert.ok(signature.blockSize >= 1 && signature.size >= 1 && signature.size <= 65_536);
        assert.equal(signature.weak.length, Math.ceil(signature.size / signature.blockSize));
        assert.equal(signature.strong.length, signature.weak.length * 16);
      },
    },
    {
      type: FrameType.Patch,
      valid: encodePatch({ path: "a/b.txt", size: 70, mtime: 1, mode: 0o644, sha256: "a".repeat(64) }, 64, [
        { copy: 0, count: 1 },
        { literal: Buffer.from("ends here") },
      ]).subarray(5),
      check: (m) => {
        assert.equal(m.type, FrameType.Patch);
        const { header, blockSize, ops } = m;
        assert.ok(header.size <= 65_536 && header.mode <= 0o7777 && blockSize >= 1 && blockSize <= 65_536);
        for (const op of ops) assert.ok("copy" in op ? Number.isInteger(op.count) : op.literal.length > 0);
      },
    },
    {
      type: FrameType.BinaryFile,
      valid: Buffer.concat(
        binaryFilePayload(
          { path: "a/caf\udce9.txt", size: 5, mtime: 1_700_000_000_000, mode: 0o644, sha256: "f".repeat(64) },
          Buffer.from("hello"),
        ),
      ),
      check: (m) => {
        assert.equal(m.type, FrameType.File);
        const { header, content } = m;
        assert.equal(header.size, content.length);
        assert.ok(header.size <= 65_536 && header.mode <= 0o7777 && Number.isSafeInteger(header.mtime));
        assert.match(header.sha256, /^[0-9a-f]{64}$/);
        assert.ok(header.path.length > 0);
      },
    },
    {
      type: FrameType.HashedData,
      valid: Buffer.concat([Buffer.alloc(32, 7), Buffer.from("chunk bytes")]),
      check: (m) => {
        assert.equal(m.type, FrameType.HashedData);
        const { sha256, bytes } = m;
        assert.match(sha256, /^[0-9a-f]{64}$/);
        assert.ok(bytes.length >= 1 && bytes.length <= 65_536);
      },
    },
  ];
  for (const { type, valid, check } of VERSION_3_BINARY_FRAMES) {
    it(`survives 10,000 random ${frameTypeName(type)} frames of version 3`, () => {
      const payload = fc.oneof(
        fc.uint8Array({ maxLength: 200 }).map((bytes) => Buffer.from(bytes)),
        // The valid payload with bytes overwritten, cut short, or extended.
        fc
          .tuple(fc.nat(valid.length - 1), fc.uint8Array({ minLength: 1, maxLength: 8 }))
          .map(([at, bytes]) => {
            const mutated = Buffer.from(valid);
            mutated.set(bytes.subarray(0, valid.length - at), at);
            return mutated;
          }),
        fc.nat(valid.length).map((length) => valid.subarray(0, length)),
        fc.uint8Array({ minLength: 1, maxLength: 64 }).map((bytes) => Buffer.concat([valid, bytes])),
        fc.constant(valid),
      );
      fuzzOneType(type, payload, check);
    });
  }

  it("splits a long chunk list over frames that each stay under the limit", () => {
    const chunks = Array.from({ length: 100_000 }, (_, i): [number, string] => [
      1 + (i % 65536),
      i.toString(16).padStart(64, "0"),
    ]);
    const frames = encodeChunkList("entry", "huge.bin", chunks);
    assert.ok(frames.length >= 4);
    const decoded = decodeAll(Buffer.concat(frames), []);
    assert.equal(decoded.error, undefined);
    assert.deepEqual(
      decoded.messages.flatMap((m) => (m as Extract<Message, { type: 0x05 }>).chunks),
      chunks,
    );
  });

  it("refuses an oversized length and an unknown type before reading the payload", () => {
    const decoder = new FrameDecoder();
    decoder.push(Buffer.from([0x7f, 0xff, 0xff, 0xff, 0x10]));
    assert.throws(() => decoder.next(), { code: "frame-too-large" });
    const unknown = new FrameDecoder();
    unknown.push(Buffer.from([0, 0, 0, 1, 0x55]));
    assert.throws(() => unknown.next(), { code: "unknown-frame" });
  });
});

describe("relative paths", () => {
  it("accepts ordinary nested paths and refuses every escape", () => {
    for (const ok of ["a", "a/b/c.txt", "..a", "a..", ".hidden/x", "spaces are fine", "ü/日本"]) {
      assert.equal(checkRelativePath(ok), ok);
    }
    for (const bad of [
      "",
      "/etc/passwd",
      "../x",
      "a/../../x",
      "a/./b",
      "a//b",
      "a/",
      "nul\0byte",
      "x".repeat(256),
    ]) {
      assert.notEqual(relativePathProblem(bad), undefined, JSON.stringify(bad));
      assert.throws(() => checkRelativePath(bad), { code: "bad-path" });
    }
  });
});
