/**
 * Replication when things go wrong, with the real processes: the primary's agent killed
 * with SIGKILL in a burst of changes (nothing is missing after its restart), the standby
 * killed mid-file (no half-written file is ever visible there), a standby away while the
 * primary takes 1,000 changes (it catches up with the differences only, and the lag comes
 * back down), and hostile primaries: paths that leave the root or name the standby's own
 * directory, a parent swapped for a symlink, an older epoch, executables sent anyway.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FrameType } from "../../agent/protocol/frames.ts";
import { encodeFile, encodeJson, type Message } from "../../agent/protocol/messages.ts";
import { connect } from "node:tls";
import { once } from "node:events";
import { FrameDecoder } from "../../agent/protocol/frames.ts";
import { decodeMessage } from "../../agent/protocol/messages.ts";
import { loadCredentials } from "../../agent/tlsCredentials.ts";
import { makeStandaloneCerts } from "./agentProcesses.ts";
import { mixedChanges, startProcess, waitForIdentical, type OffsiteProcess } from "./replicationSupport.ts";
import { inertRandomBytes } from "./testSupport.ts";

const SITE = "failure-site";
const PAIR = "failure-pair";

interface Pair {
  work: string;
  primary: string;
  standby: string;
  certs: { receiver: string; client: string };
  standbyProcess?: OffsiteProcess;
  replicate?: OffsiteProcess;
  port: number;
}

async function makePair(name: string): Promise<Pair> {
  const work = mkdtempSync(join(tmpdir(), `offsite-${name}-`));
  const pair: Pair = {
    work,
    primary: join(work, "primary"),
    standby: join(work, "standby"),
    certs: await makeStandaloneCerts(join(work, "certs"), SITE, PAIR),
    port: 0,
  };
  mkdirSync(pair.primary);
  return pair;
}

async function startStandby(pair: Pair): Promise<void> {
  const args = ["standby", "--root", pair.standby, "--certs", pair.certs.receiver, "--host", "127.0.0.1"];
  pair.standbyProcess = startProcess([...args, "--port", String(pair.port)]);
  pair.port = (await pair.standbyProcess.waitFor((e) => e.event === "listening")).port as number;
}

function startReplicate(pair: Pair): OffsiteProcess {
  pair.replicate = startProcess([
    "replicate",
    pair.primary,
    "--to",
    `127.0.0.1:${pair.port}`,
    "--certs",
    pair.certs.client,
  ]);
  return pair.replicate;
}

async function stopPair(pair: Pair | undefined): Promise<void> {
  await pair?.replicate?.stop();
  await pair?.standbyProcess?.stop();
  if (pair) rmSync(pair.work, { recursive: true, force: true });
}

describe("the primary's agent killed with SIGKILL during a burst", () => {
  let pair: Pair | undefined;
  after(() => stopPair(pair));

  it("after its restart, no change is missing on the standby", async () => {
    pair = await makePair("kill-primary");
    await startStandby(pair);
    const first = startReplicate(pair);
    await first.waitFor((e) => e.event === "synced");
    const burst = mixedChanges(pair.primary, 1500, 3, 10);
    await new Promise((resolve) => setTimeout(resolve, 300));
    await first.stop("SIGKILL");
    await burst;
    const second = startReplicate(pair);
    await second.waitFor((e) => e.event === "synced");
    await waitForIdentical(pair.primary, pair.standby, 30_000);
  });
});

describe("the standby killed with SIGKILL in the middle of a file", () => {
  let pair: Pair | undefined;
  after(() => stopPair(pair));

  it("never shows a half-written file, and has it whole after its restart", async () => {
    pair = await makePair("kill-standby");
    writeFileSync(join(pair.primary, "movie.bin"), Buffer.alloc(1024, 1));
    await startStandby(pair);
    const replicate = startReplicate(pair);
    await replicate.waitFor((e) => e.event === "synced");
    await waitForIdentical(pair.primary, pair.standby, 10_000);
    // A reader on the standby: the file is always the old 1 KiB or the whole new one.
    const big = inertRandomBytes(96 * 1024 * 1024);
    const sizes = new Set<number>();
    const target = join(pair.standby, "movie.bin");
    const watching = setInterval(() => {
      try {
        sizes.add(statSync(target).size);
      } catch {
        sizes.add(-1);
      }
    }, 2);
    writeFileSync(join(pair.primary, "movie.bin"), big);
    // Kill it while the new content is arriving (its partial data grows under .offsite).
    const partial = join(pair.standby, ".offsite", "partial", "data");
    const started = Date.now();
    while (!existsSync(partial) && Date.now() - started < 20_000) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    assert.ok(existsSync(partial), "the large file's transfer started");
    await pair.standbyProcess!.stop("SIGKILL");
    assert.ok(
      statSync(target).size === 1024,
      "the standby keeps the old copy while the new one is incomplete",
    );
    await startStandby(pair);
    await waitForIdentical(pair.primary, pair.standby, 60_000);
    clearInterval(watching);
    sizes.delete(-1);
    assert.deepEqual(
      [...sizes].sort((a, b) => a - b),
      [1024, big.length].filter((s) => sizes.has(s)),
    );
    for (const size of sizes) assert.ok(size === 1024 || size === big.length, `a reader saw ${size} bytes`);
    assert.deepEqual(
      readdirSync(pair.standby).filter((name) => name !== ".offsite"),
      ["movie.bin"],
      "no temporary file in the live tree",
    );
  });
});

describe("a standby away while the primary takes 1,000 changes", () => {
  let pair: Pair | undefined;
  after(() => stopPair(pair));

  it("catches up with only the differences, and new changes flow at once again", async () => {
    pair = await makePair("catch-up");
    for (let d = 0; d < 20; d++) {
      mkdirSync(join(pair.primary, `site${d}`));
      for (let f = 0; f < 50; f++)
        writeFileSync(join(pair.primary, `site${d}`, `f${f}.html`), inertRandomBytes(8192));
    }
    writeFileSync(join(pair.primary, "archive.bin"), inertRandomBytes(8 * 1024 * 1024));
    await startStandby(pair);
    const replicate = startReplicate(pair);
    await replicate.waitFor((e) => e.event === "synced");
    await waitForIdentical(pair.primary, pair.standby, 20_000);
    await pair.standbyProcess!.stop("SIGKILL");
    await replicate.waitFor((e) => e.event === "disconnected");
    const seen = replicate.events.length;
    await mixedChanges(pair.primary, 1000, 5, 20);
    await startStandby(pair);
    const synced = await replicate.waitFor(
      (e) => e.event === "synced" && replicate.events.indexOf(e) >= seen,
      60_000,
    );
    await waitForIdentical(pair.primary, pair.standby, 30_000);
    const tree = 20 * 50 * 8192 + 8 * 1024 * 1024;
    const bytes = synced.bytes as number;
    process.stderr.write(
      `[replicationFailures] catch-up after 1,000 changes sent ${bytes} bytes (the tree is ${tree}); ${JSON.stringify(synced)}\n`,
    );
    assert.ok(bytes < tree / 4, `the catch-up sent ${bytes} bytes of a ${tree}-byte tree`);
    // New changes flow at once, with a lag back under a second.
    const after = replicate.events.length;
    writeFileSync(join(pair.primary, "site0", "fresh.html"), "fresh");
    const applied = await replicate.waitFor(
      (e) => e.event === "applied" && (e.changes as number) > 0 && replicate.events.indexOf(e) >= after,
    );
    process.stderr.write(
      `[replicationFailures] a change after the catch-up: lag ${applied.lagMs as number} ms\n`,
    );
    // Timings are the benchmark's (B5); here only that it flows at once, not at the next rescan.
    assert.ok((applied.lagMs as number) < 10_000, `lag ${applied.lagMs as number} ms`);
  });
});

/**
 * A hand-written primary: sends `frames` (Hello first) and returns what the standby sent
 * until it answered Applied or Error, or closed (cut after 10 s).
 */
async function rawSession(port: number, certsDir: string, frames: Buffer[]): Promise<Message[]> {
  const socket = connect({ host: "127.0.0.1", port, servername: "localhost", ...loadCredentials(certsDir) });
  socket.on("error", () => undefined);
  const decoder = new FrameDecoder();
  const messages: Message[] = [];
  const closed = once(socket, "close");
  const answered = new Promise<void>((resolve) => {
    socket.on("data", (bytes: Buffer) => {
      decoder.push(bytes);
      for (let frame = decoder.next(); frame; frame = decoder.next()) {
        const message = decodeMessage(frame);
        messages.push(message);
        if (message.type === FrameType.Applied || message.type === FrameType.Error) resolve();
      }
    });
  });
  await once(socket, "secureConnect");
  for (const frame of frames) socket.write(frame);
  await Promise.race([answered, closed, new Promise((resolve) => setTimeout(resolve, 10_000))]);
  socket.destroy();
  return messages;
}

describe("a hostile primary", () => {
  let pair: Pair | undefined;
  const outside = () => join(pair!.work, "outside");
  before(async () => {
    pair = await makePair("hostile");
    mkdirSync(outside());
    await startStandby(pair);
  });
  after(() => stopPair(pair));

  const hello = (epoch: number) =>
    encodeJson(FrameType.Hello, {
      versions: [2],
      role: "replicate",
      site: SITE,
      source: PAIR,
      epoch,
      client: "hostile-test",
    });
  const file = (path: string, content: Buffer) =>
    encodeFile(
      {
        path,
        size: content.length,
        mtime: Date.now(),
        mode: 0o644,
        sha256: createHash("sha256").update(content).digest("hex"),
      },
      content,
    );
  const errorOf = (messages: Message[]) => messages.find((m) => m.type === FrameType.Error);

  for (const path of ["../escaped.txt", ".offsite/standby.json", "a/../../escaped.txt", "/etc/passwd"]) {
    it(`is refused for the path ${path}, and nothing is written`, async () => {
      const messages = await rawSession(pair!.port, pair!.certs.client, [
        hello(1),
        file(path, Buffer.from("pwned")),
        encodeJson(FrameType.Flush, { seq: 1 }),
      ]);
      const error = errorOf(messages);
      assert.equal(error?.type === FrameType.Error && error.code, "bad-path", JSON.stringify(error));
      assert.ok(!existsSync(join(pair!.work, "escaped.txt")));
      assert.ok(!messages.some((m) => m.type === FrameType.Applied));
    });
  }

  it("never writes through a directory swapped for a symlink on the standby", async () => {
    symlinkSync(outside(), join(pair!.standby, "uploads"));
    const messages = await rawSession(pair!.port, pair!.certs.client, [
      hello(1),
      file("uploads/shell.txt", Buffer.from("pwned")),
      encodeJson(FrameType.Flush, { seq: 1 }),
    ]);
    const error = errorOf(messages);
    assert.equal(error?.type === FrameType.Error && error.code, "bad-path", JSON.stringify(error));
    assert.deepEqual(readdirSync(outside()), []);
    rmSync(join(pair!.standby, "uploads"));
  });

  it("keeps executables out with its own firewall, and says so in Applied", async () => {
    const elf = Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46]), randomBytes(100)]);
    const messages = await rawSession(pair!.port, pair!.certs.client, [
      hello(1),
      file("logo.png", elf),
      file("ok.txt", Buffer.from("fine")),
      encodeJson(FrameType.Flush, { seq: 7 }),
    ]);
    const applied = messages.find((m) => m.type === FrameType.Applied);
    assert.ok(applied?.type === FrameType.Applied, JSON.stringify(messages));
    assert.equal(applied.seq, 7);
    assert.deepEqual(applied.refused, [{ path: "logo.png", reason: "firewall-executable" }]);
    assert.ok(!existsSync(join(pair!.standby, "logo.png")));
    assert.ok(existsSync(join(pair!.standby, "ok.txt")));
  });

  it("refuses a primary of an older epoch (a demoted primary that came back)", async () => {
    const newer = await rawSession(pair!.port, pair!.certs.client, [
      hello(5),
      encodeJson(FrameType.Flush, { seq: 1 }),
    ]);
    assert.ok(
      newer.some((m) => m.type === FrameType.Applied),
      JSON.stringify(newer),
    );
    const older = await rawSession(pair!.port, pair!.certs.client, [
      hello(4),
      file("stale.txt", Buffer.from("old primary")),
      encodeJson(FrameType.Flush, { seq: 2 }),
    ]);
    const error = errorOf(older);
    assert.equal(error?.type === FrameType.Error && error.code, "stale-epoch", JSON.stringify(error));
    assert.ok(!existsSync(join(pair!.standby, "stale.txt")));
  });
});
