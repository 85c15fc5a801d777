/**
 * `offsite restore` facing a hostile or tampered receiver, as real processes over TLS on
 * loopback: a fake receiver sends crafted restore streams (a directory that becomes a
 * symlink to a directory outside the target, the same one level down, a symlink with
 * contents, a file that fails its hash, a Begin inside a Begin, a NUL in a symlink's
 * target), and a real receiver's store is tampered with on disk (a stored file or
 * directory swapped for a link to outside). Whatever happens, nothing outside the target
 * changes: the surroundings are hashed (mode, mtime, content of every entry) before and
 * after. Then a fuzz: random streams of the same frames, in-process, with the same check.
 * Long on purpose (past ~400 lines): each trick is spelled out frame by frame.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import {
  chmodSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { createServer, type Server } from "node:tls";
import { FramedConnection } from "../../agent/protocol/connection.ts";
import { encodeFrame, FrameType } from "../../agent/protocol/frames.ts";
import { encodeFile, encodeJson } from "../../agent/protocol/messages.ts";
import { restoreJob } from "../../agent/restore/restoreJob.ts";
import { loadCredentials, serverTlsOptions } from "../../agent/tlsCredentials.ts";
import {
  makeStandaloneCerts,
  reportOf,
  runOffsite,
  startReceiverProcess,
  type ReceiverProcess,
} from "./agentProcesses.ts";
import { prng, sha256Hex } from "./testSupport.ts";
import { fsPath, nameFromBytes } from "../../agent/protocol/byteNames.ts";

const SITE = "5a5a5a5a-1111-4222-8333-444444444444";
const SOURCE = "6b6b6b6b-5555-4666-8777-888888888888";
const VERSION = "20261201T120000Z";
const MTIME = Date.UTC(2020, 0, 1);

/** Mode, mtime and content (or target) of every entry under dir, hashed: the surroundings. */
/** A directory's names, as bytes in the agent's string form: restores may make byte names. */
function namesIn(dir: string): string[] {
  return readdirSync(fsPath(dir), { encoding: "buffer" }).map(nameFromBytes).sort();
}

function fingerprint(dir: string): string {
  const hash = createHash("sha256");
  const walk = (path: string) => {
    const stat = lstatSync(fsPath(path));
    hash.update(`${path} ${stat.mode} ${stat.mtimeMs}\n`);
    if (stat.isSymbolicLink()) hash.update(readlinkSync(fsPath(path), { encoding: "buffer" }));
    else if (stat.isFile()) hash.update(readFileSync(fsPath(path)));
    else if (stat.isDirectory()) for (const name of namesIn(path)) walk(join(path, name));
  };
  walk(dir);
  return hash.digest("hex");
}

/**
 * Every path under dir, never through a link (readdirSync's `recursive` stats, so it
 * follows a symlink to `..` for ever).
 */
function listTree(dir: string, prefix = ""): string[] {
  const paths: string[] = [];
  for (const name of namesIn(join(dir, prefix))) {
    const path = prefix ? `${prefix}/${name}` : name;
    paths.push(path);
    if (lstatSync(fsPath(join(dir, path))).isDirectory()) paths.push(...listTree(dir, path));
  }
  return paths;
}

/** The message of the error a client printed (with --json, a JSON line on stderr). */
function errorOf(finished: { stderr: string }): string {
  const line = finished.stderr.trim().split("\n").at(-1) ?? "";
  try {
    return (JSON.parse(line) as { message: string }).message;
  } catch {
    return finished.stderr;
  }
}

/** Gives every directory under dir (not following links) its owner's permissions back. */
function makeRemovable(dir: string): void {
  if (!lstatSync(fsPath(dir)).isDirectory()) return;
  chmodSync(fsPath(dir), 0o700);
  for (const name of namesIn(dir)) makeRemovable(join(dir, name));
}

/** An outside directory with a file and a subdirectory, modes and mtimes set, to be left alone. */
function makeOutside(dir: string): void {
  mkdirSync(join(dir, "y"), { recursive: true });
  writeFileSync(join(dir, "secret.txt"), "outside the target");
  writeFileSync(join(dir, "y", "deep.txt"), "deeper outside");
  for (const path of [join(dir, "y", "deep.txt"), join(dir, "secret.txt"), join(dir, "y"), dir]) {
    utimesSync(path, new Date(MTIME), new Date(MTIME));
  }
}

const dir = (path: string, mode = 0o777) => encodeJson(FrameType.Directory, { path, mtime: 0, mode });
const link = (path: string, target: string) => encodeJson(FrameType.Symlink, { path, mtime: 0, target });
function file(path: string, content: string | Buffer, mode = 0o666): Buffer {
  const bytes = Buffer.from(content);
  return encodeFile({ path, size: bytes.length, mtime: 0, mode, sha256: sha256Hex(bytes) }, bytes);
}
const commit = () => encodeJson(FrameType.Commit, { files: 0, bytes: 0, filtered: {} });

/**
 * A fake receiver: answers any restore Hello with Welcome and then `script()`'s frames as
 * they are (a compromised server, or a tampered store served by a faithful one).
 */
async function hostileReceiver(
  certs: string,
  script: () => Buffer[],
): Promise<{ port: number; close: () => Promise<void> }> {
  const server: Server = createServer(serverTlsOptions(loadCredentials(certs)), (socket) => {
    const connection = new FramedConnection(socket);
    socket.on("error", () => undefined);
    void (async () => {
      try {
        await connection.expect(FrameType.Hello);
        const welcome = { version: 1, session: "hostile", base: VERSION, resumed: false };
        await connection.send(encodeJson(FrameType.Welcome, welcome));
        for (const frame of script()) await connection.send(frame);
        await connection.next(); // until the client goes
      } catch {
        // the client refused the stream or went away: that is the point
      } finally {
        socket.destroy();
      }
    })();
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as { port: number };
  return { port, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

describe("restore facing a hostile receiver", () => {
  let work: string;
  let certs: { receiver: string; client: string };
  let outside: string;
  let before_: string;
  let script: () => Buffer[] = () => [];
  let fake: { port: number; close: () => Promise<void> };

  before(async () => {
    work = mkdtempSync(join(tmpdir(), "offsite-hostile-restore-"));
    certs = await makeStandaloneCerts(join(work, "certs"), SITE, SOURCE);
    outside = join(work, "outside");
    makeOutside(outside);
    before_ = fingerprint(outside);
    fake = await hostileReceiver(certs.receiver, () => script());
  });
  after(async () => {
    await fake?.close();
    rmSync(work, { recursive: true, force: true });
  });

  let count = 0;
  /** Restores what `frames` say into a fresh directory; returns the result and the directory. */
  const restoreFrom = async (frames: Buffer[]) => {
    script = () => frames;
    const destination = join(work, `dest-${++count}`);
    const finished = await runOffsite([
      "restore",
      "--from",
      `127.0.0.1:${fake.port}`,
      "--certs",
      certs.client,
      "--json",
      destination,
    ]);
    return { finished, destination };
  };
  const untouched = () => assert.equal(fingerprint(outside), before_, "the outside directory is untouched");

  const tricks: [string, () => Buffer[], RegExp][] = [
    [
      "a directory, then a symlink of the same name to a directory outside",
      () => [dir("x", 0o777), link("x", outside), commit()],
      /came after "x"/,
    ],
    [
      "a directory with a subdirectory, then the directory as a symlink to outside",
      () => [dir("q", 0o777), dir("q/y", 0o777), link("q", outside), commit()],
      /"q" came after "q\/y"/,
    ],
    [
      "a symlink to outside, then a file inside it",
      () => [link("s", outside), file("s/secret.txt", "planted", 0o777), commit()],
      /not inside a directory of this version/,
    ],
    [
      "a symlink to outside, then a directory inside it",
      () => [link("s", outside), dir("s/y", 0o777), commit()],
      /not inside a directory of this version/,
    ],
    [
      "a file outside any directory the stream sent",
      () => [file("nowhere/f.txt", "x"), commit()],
      /not inside a directory of this version/,
    ],
  ];
  for (const [name, frames, problem] of tricks) {
    it(`refuses ${name}, and changes nothing outside the target`, async () => {
      const { finished } = await restoreFrom(frames());
      assert.equal(finished.code, 1, finished.stdout);
      assert.match(errorOf(finished), problem);
      untouched();
    });
  }

  it("creates symlinks after the files, sets directory metadata last, and never through a link", async () => {
    // A valid stream whose symlink points outside: it is created as a link, nothing more.
    const { finished, destination } = await restoreFrom([
      dir("d", 0o750),
      file("d/f.txt", "inside", 0o640),
      link("d/out", outside),
      commit(),
    ]);
    assert.equal(finished.code, 0, finished.stderr);
    assert.equal(readlinkSync(join(destination, "d", "out")), outside);
    assert.equal(lstatSync(join(destination, "d")).mode & 0o777, 0o750);
    assert.equal(lstatSync(join(destination, "d", "f.txt")).mode & 0o777, 0o640);
    assert.equal(lstatSync(join(destination, "d")).mtimeMs, 0);
    untouched();
  });

  it("refuses a symlink whose target holds a NUL byte, as a bad message", async () => {
    const { finished } = await restoreFrom([link("n", `${outside}\0tail`), commit()]);
    assert.equal(finished.code, 1);
    assert.match(finished.stderr, /symlink target cannot contain a NUL byte/);
    untouched();
  });

  it("refuses a large file that fails its hash: no temporary file is left, no descriptor closed twice", async () => {
    const bytes = randomBytes(100_000);
    const { finished, destination } = await restoreFrom([
      dir("d"),
      encodeJson(FrameType.Begin, { path: "d/big.bin", mtime: 0, mode: 0o644 }),
      encodeFrame(FrameType.Data, bytes.subarray(0, 60_000)),
      encodeFrame(FrameType.Data, bytes.subarray(60_000)),
      encodeJson(FrameType.End, { size: bytes.length, sha256: "0".repeat(64) }),
      commit(),
    ]);
    assert.equal(finished.code, 1);
    assert.match(finished.stderr, /d\/big\.bin arrived damaged/);
    assert.doesNotMatch(finished.stderr, /EBADF/);
    assert.deepEqual(listTree(destination), ["d"], "no temporary file is left");
  });

  it("refuses a HardLink to anything but a file this restore wrote", async () => {
    for (const [to, problem] of [
      ["../../outside/secret.txt", /has a \.\. component/],
      ["never-sent.txt", /not a file this restore wrote/],
      ["d", /not a file this restore wrote/],
    ] as const) {
      const { finished } = await restoreFrom([
        dir("d", 0o755),
        file("d/a.txt", "restored"),
        encodeJson(FrameType.HardLink, { path: "link", to }),
        commit(),
      ]);
      assert.equal(finished.code, 1, finished.stderr);
      assert.match(finished.stderr, problem);
    }
    untouched();
  });

  it("refuses a Begin inside another file's Begin..End, and leaves no temporary file", async () => {
    const { finished, destination } = await restoreFrom([
      encodeJson(FrameType.Begin, { path: "a.bin", mtime: 0, mode: 0o644 }),
      encodeFrame(FrameType.Data, Buffer.alloc(10)),
      encodeJson(FrameType.Begin, { path: "b.bin", mtime: 0, mode: 0o644 }),
      commit(),
    ]);
    assert.equal(finished.code, 1);
    assert.match(finished.stderr, /inside Begin\.\.End of a\.bin/);
    assert.doesNotMatch(finished.stderr, /EBADF/);
    assert.deepEqual(readdirSync(destination), []);
  });

  it("replaces a link the destination already holds instead of writing through it", async () => {
    const destination = join(work, "dest-prepared");
    mkdirSync(destination);
    symlinkSync(outside, join(destination, "x"));
    symlinkSync(join(outside, "secret.txt"), join(destination, "secret.txt"));
    script = () => [
      file("secret.txt", "restored"),
      dir("x", 0o700),
      file("x/secret.txt", "restored"),
      commit(),
    ];
    const finished = await runOffsite([
      "restore",
      "--from",
      `127.0.0.1:${fake.port}`,
      "--certs",
      certs.client,
      "--json",
      destination,
    ]);
    assert.equal(finished.code, 0, finished.stderr);
    assert.ok(lstatSync(join(destination, "x")).isDirectory());
    assert.equal(readFileSync(join(destination, "x", "secret.txt"), "utf8"), "restored");
    assert.equal(readFileSync(join(destination, "secret.txt"), "utf8"), "restored");
    untouched();
  });

  it("fuzz: random restore streams never change anything outside the target", async () => {
    const random = prng(12);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
    // Byte names too (byteNames.ts): escaped Latin-1 and 0xff, and forms that stand for no
    // byte string (a lone high surrogate, escaped UTF-8), which must be refused.
    const names = ["a", "b", "a/b", "a/b/c", "b/a", "a/c", "q", "q/y", "q/y/z"];
    names.push("\udce9", "a/\udcff", "\udce9/b", "q\udce9/y", "\ud800", "a/\udcc3\udca9");
    const targets = [outside, join(outside, "y"), "../../outside", "..", "/", join(outside, "secret.txt")];
    targets.push(`${outside}/\udce9`, "../\udcff", "\udfff");
    const modes = [0o777, 0o700, 0o000, 0o4777, 0o555];
    for (let round = 0; round < 200; round++) {
      const frames: Buffer[] = [];
      for (let i = 0, n = 1 + Math.floor(random() * 8); i < n; i++) {
        const path = pick(names);
        const kind = random();
        if (kind < 0.35) frames.push(dir(path, pick(modes)));
        else if (kind < 0.6) frames.push(link(path, pick(targets)));
        else if (kind < 0.8) frames.push(file(path, `round ${round}`, pick(modes)));
        else if (kind < 0.85) frames.push(encodeJson(FrameType.HardLink, { path, to: pick(names) }));
        else {
          const bytes = Buffer.from(`large ${round}`);
          frames.push(
            encodeJson(FrameType.Begin, { path, mtime: 0, mode: pick(modes) }),
            encodeFrame(FrameType.Data, bytes),
            encodeJson(FrameType.End, {
              size: bytes.length,
              sha256: random() < 0.8 ? sha256Hex(bytes) : "1".repeat(64),
            }),
          );
        }
      }
      frames.push(commit());
      script = () => frames;
      const destination = join(work, "fuzz", String(round));
      try {
        await restoreJob({
          endpoint: { host: "127.0.0.1", port: fake.port, credentials: loadCredentials(certs.client) },
          site: SITE,
          sourceId: SOURCE,
          destination,
        });
      } catch {
        // refused: fine, as long as nothing outside moved
      }
      assert.equal(fingerprint(outside), before_, `round ${round} changed the outside`);
      for (const name of listTree(destination)) {
        assert.doesNotMatch(name, /\.offsite-restore-/, `round ${round} left a temporary file`);
      }
    }
    // The fuzz's restores may leave 0o000 directories: make them removable.
    makeRemovable(join(work, "fuzz"));
    rmSync(join(work, "fuzz"), { recursive: true, force: true });
  });
});

describe("restore from a receiver whose store was tampered with on disk", () => {
  let work: string;
  let receiver: ReceiverProcess;
  let clientCerts: string;
  let outside: string;
  let before_: string;
  let tree: string;
  let to: string;

  before(async () => {
    work = mkdtempSync(join(tmpdir(), "offsite-tampered-"));
    const certs = await makeStandaloneCerts(join(work, "certs"), SITE, SOURCE);
    clientCerts = certs.client;
    receiver = await startReceiverProcess(join(work, "root"), certs.receiver);
    to = `127.0.0.1:${receiver.port}`;
    outside = join(work, "outside");
    makeOutside(outside);
    writeFileSync(join(outside, "big.bin"), randomBytes(200_000));
    utimesSync(outside, new Date(MTIME), new Date(MTIME));
    before_ = fingerprint(outside);
    const source = join(work, "src");
    mkdirSync(join(source, "d"), { recursive: true });
    writeFileSync(join(source, "small.txt"), "stored small");
    writeFileSync(join(source, "big.bin"), randomBytes(200_000));
    writeFileSync(join(source, "d", "inner.txt"), "stored inner");
    // A user's file named as restore's temporary file once was: it must restore like any other.
    writeFileSync(join(source, `.offsite-restore-${process.pid}.tmp`), "mine");
    writeFileSync(join(source, ".offsite-restore-0011223344556677.tmp"), "mine too");
    const pushed = await runOffsite(["push", source, "--to", to, "--certs", clientCerts, "--json"]);
    assert.equal(pushed.code, 0, pushed.stderr);
    tree = join(
      work,
      "root",
      SITE,
      SOURCE,
      "versions",
      reportOf<{ version: string }>(pushed).version,
      "tree",
    );
  });
  after(async () => {
    await receiver?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  const restore = (destination: string) =>
    runOffsite(["restore", "--from", to, "--certs", clientCerts, "--json", join(work, destination)]);

  it("restores a source file named like restore's temporary files", async () => {
    const restored = await restore("dest-names");
    assert.equal(restored.code, 0, restored.stderr);
    const dest = join(work, "dest-names");
    assert.equal(readFileSync(join(dest, `.offsite-restore-${process.pid}.tmp`), "utf8"), "mine");
    assert.equal(readFileSync(join(dest, ".offsite-restore-0011223344556677.tmp"), "utf8"), "mine too");
    assert.equal(readdirSync(dest).length, 5);
  });

  /** Swaps a stored name for a symlink to `target` for one test, then puts it back. */
  const swapped = async (name: string, target: string, check: () => Promise<void>) => {
    const stored = join(tree, name);
    const aside = `${stored}.aside`;
    const { renameSync } = await import("node:fs");
    renameSync(stored, aside);
    symlinkSync(target, stored);
    try {
      await check();
    } finally {
      unlinkSync(stored);
      renameSync(aside, stored);
    }
  };

  for (const [name, target] of [
    ["small.txt", "secret.txt"],
    ["big.bin", "big.bin"],
    ["d", "y"],
  ] as const) {
    it(`refuses to read a stored ${name} swapped for a link to outside, and restores nothing from there`, async () => {
      await swapped(name, join(outside, target), async () => {
        const restored = await restore(`dest-swapped-${name}`);
        assert.equal(restored.code, 1, restored.stdout);
        assert.match(errorOf(restored), new RegExp(`stored version is damaged at "${name}"`));
        const dest = join(work, `dest-swapped-${name}`);
        const got = listTree(dest);
        for (const path of got) {
          const full = join(dest, path);
          if (lstatSync(full).isFile()) {
            assert.notEqual(readFileSync(full, "utf8"), readFileSync(join(outside, "secret.txt"), "utf8"));
          }
        }
        assert.ok(!got.includes("deep.txt") && !got.includes("d/deep.txt"), "nothing came from outside");
      });
      assert.equal(fingerprint(outside), before_);
    });
  }

  it("refuses a push that would carry a stored file swapped for a link, naming it", async () => {
    await swapped("small.txt", join(outside, "secret.txt"), async () => {
      const pushed = await runOffsite([
        "push",
        join(work, "src"),
        "--to",
        to,
        "--certs",
        clientCerts,
        "--json",
      ]);
      assert.equal(pushed.code, 1, pushed.stdout);
      assert.match(errorOf(pushed), /store is damaged: .*small\.txt is a symbolic link/);
    });
    assert.equal(fingerprint(outside), before_);
    // Repaired, the next push runs.
    const again = await runOffsite(["push", join(work, "src"), "--to", to, "--certs", clientCerts, "--json"]);
    assert.equal(again.code, 0, again.stderr);
  });
});
