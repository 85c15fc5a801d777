import { it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  byteNameProblem,
  bytesOfName,
  fsPath,
  hasEscapedBytes,
  nameFromBytes,
  printableName,
} from "./byteNames.ts";

it("a UTF-8 name is itself; other bytes become one lone surrogate each", () => {
  assert.equal(nameFromBytes(Buffer.from("photo-é-😀.jpg")), "photo-é-😀.jpg");
  assert.equal(nameFromBytes(Buffer.from("caf\xe9.txt", "latin1")), "caf\udce9.txt");
  assert.equal(nameFromBytes(Buffer.from([0xff, 0xfe, 0x41])), "\udcff\udcfeA");
  // A UTF-8-encoded surrogate (CESU-8) and an overlong "/" are not UTF-8 either.
  assert.equal(nameFromBytes(Buffer.from([0xed, 0xa0, 0x80])), "\udced\udca0\udc80");
  assert.equal(nameFromBytes(Buffer.from([0xc0, 0xaf])), "\udcc0\udcaf");
  // A name that really holds U+FFFD stays as it is.
  assert.equal(nameFromBytes(Buffer.from("a\ufffdb")), "a\ufffdb");
  assert.equal(hasEscapedBytes("caf\udce9"), true);
  assert.equal(hasEscapedBytes("\u{10080}"), false, "the low half of a pair is no escape");
  assert.equal(printableName("caf\udce9.txt"), "caf\\xe9.txt");
  assert.equal(fsPath("plain/path"), "plain/path");
  assert.deepEqual(fsPath("a/caf\udce9"), Buffer.from("a/caf\xe9", "latin1"));
});

it("any byte string round-trips, and its string form is canonical", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
      const name = nameFromBytes(bytes);
      assert.ok(bytesOfName(name).equals(Buffer.from(bytes)));
      assert.equal(byteNameProblem(name), undefined);
    }),
    { numRuns: 5000 },
  );
  fc.assert(
    fc.property(fc.string({ unit: "grapheme", maxLength: 32 }), (text) => {
      assert.equal(nameFromBytes(Buffer.from(text)), text);
    }),
  );
});

it("refuses strings that stand for no byte string, or give one file two names", () => {
  assert.match(byteNameProblem("\ud800")!, /stands for no byte/);
  assert.match(byteNameProblem("a\udc41")!, /stands for no byte/, "U+DC41 would be the ASCII byte A");
  assert.match(byteNameProblem("\udcc3\udca9")!, /valid UTF-8/, "the bytes of é, escaped");
  assert.throws(() => bytesOfName("\udfff"), /lone surrogate/);
  assert.equal(byteNameProblem("plain"), undefined);
  assert.equal(byteNameProblem("\u{1f600}"), undefined);
});
