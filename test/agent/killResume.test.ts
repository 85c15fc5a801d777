/**
 * Kill tests: the receiver and the pusher, as real processes, are each killed with SIGKILL
 * at random points across several jobs. Every job finishes on retry, every file verifies
 * (compare by SHA-256, then a byte-for-byte restore), and what an interruption wastes on
 * the receiver's disk — bytes written but not reusable — is at most one chunk.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { MAX_CHUNK } from "../../agent/chunking/fastCdc.ts";
import { prng } from "./testSupport.ts";
import {
  makeStandaloneCerts,
  reportOf,
  runOffsite,
  startOffsite,
  startReceiverProcess,
  type ReceiverProcess,
} from "./agentProcesses.ts";

const SITE = "2c9f6a10-3b4d-4e5f-9a0b-1c2d3e4f5a6b";
const SOURCE = "8e7d6c5b-4a39-4281-8f0e-d1c2b3a49586";
/** Interruptions of each kind: the receiver killed, and the pusher killed. */
const KILL_POINTS = 20;

function pseudoRandomBytes(length: number, random: () => number): Buffer {
  const bytes = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i += 4)
    bytes.writeUInt32LE(Math.floor(random() * 0x1_0000_0000), Math.min(i, length - 4));
  return bytes;
}

/** Bytes the receiver wrote for the file in flight that the next session cannot reuse. */
function wastedPartialBytes(stagingDir: string): number {
  const data = join(stagingDir, "partial", "data");
  const log = join(stagingDir, "partial", "chunks.log");
  if (!existsSync(data)) return 0;
  const content = readFileSync(data);
  let verified = 0;
  for (const line of existsSync(log) ? readFileSync(log, "utf8").split("\n") : []) {
    const match = /^(\d+) ([0-9a-f]{64})$/.exec(line);
    if (!match) break;
    const length = Number(match[1]);
    const chunk = content.subarray(verified, verified + length);
    if (chunk.length !== length || createHash("sha256").update(chunk).digest("hex") !== match[2]) break;
    verified += length;
  }
  return content.length - verified;
}

describe("kill tests: SIGKILL at random points, then resume", () => {
  it(`finishes every job after ${KILL_POINTS}+ kills of the receiver and ${KILL_POINTS}+ of the pusher, losing at most a chunk each time`, async (t) => {
    const random = prng(Number(process.env.OFFSITE_KILL_SEED ?? 20261122));
    const work = mkdtempSync(join(tmpdir(), "offsite-kill-"));
    const source = join(work, "source");
    const root = join(work, "root");
    let receiver: ReceiverProcess | undefined;
    try {
      const { receiver: receiverCerts, client: clientCerts } = await makeStandaloneCerts(
        join(work, "certs"),
        SITE,
        SOURCE,
      );
      const stagingDir = join(root, SITE, SOURCE, "staging");
      receiver = await startReceiverProcess(root, receiverCerts);

      mkdirSync(join(source, "small"), { recursive: true });
      writeFileSync(join(source, "large-1.bin"), pseudoRandomBytes(24 * 1024 * 1024, random));
      for (let i = 0; i < 400; i++) {
        writeFileSync(
          join(source, "small", `f${i}.dat`),
          pseudoRandomBytes(1024 + Math.floor(random() * 16_384), random),
        );
      }

      const kills = { receiver: 0, pusher: 0 };
      const enough = () => kills.receiver >= KILL_POINTS && kills.pusher >= KILL_POINTS;
      const worst: number[] = [];
      for (let job = 0; !enough() || job < 3; job++) {
        if (job > 0) {
          // Change the source: edits inside the large file, rewritten and new small files, a new large file.
          const large = readFileSync(join(source, "large-1.bin"));
          for (let e = 0; e < 20; e++)
            pseudoRandomBytes(4096, random).copy(large, Math.floor(random() * (large.length - 4096)));
          writeFileSync(join(source, "large-1.bin"), large);
          for (let i = 0; i < 40; i++) {
            const n = Math.floor(random() * 400);
            writeFileSync(join(source, "small", `f${n}.dat`), pseudoRandomBytes(2048, random));
          }
          writeFileSync(join(source, `large-${job + 1}.bin`), pseudoRandomBytes(8 * 1024 * 1024, random));
        }
        let expectResume = false;
        for (let attempt = 0; ; attempt++) {
          const eventsBefore = receiver.events.length;
          const push = startOffsite([
            "push",
            source,
            "--to",
            `127.0.0.1:${receiver.port}`,
            "--certs",
            clientCerts,
            "--json",
          ]);
          const killAt = attempt < 3 ? 50 + random() * 500 : undefined;
          // Whichever has fewer kills so far; the moment of the kill is random.
          const victim = kills.receiver <= kills.pusher ? "receiver" : "pusher";
          const victimProcess = victim === "pusher" ? push.child : receiver.child;
          let killed = false;
          const timer =
            killAt === undefined
              ? undefined
              : setTimeout(() => {
                  killed = true;
                  victimProcess.kill("SIGKILL");
                }, killAt);
          const finished = await push.finished;
          clearTimeout(timer);
          if (!killed) {
            assert.equal(finished.code, 0, `push failed without a kill: ${finished.stderr}`);
            if (expectResume)
              assert.equal(
                reportOf<{ resumed: boolean }>(finished).resumed,
                true,
                "staged work was not resumed",
              );
            break;
          }
          if (victim === "receiver" && victimProcess.exitCode === null && victimProcess.signalCode === null) {
            await new Promise((resolve) => victimProcess.once("exit", resolve));
          }
          if (victim === "pusher") {
            // The receiver goes on with the frames it had buffered; measure once it has
            // noticed the pusher is gone and ended the session.
            const receiverNow = receiver;
            const settled = () => {
              const events = receiverNow.events.slice(eventsBefore);
              const ended = new Set(
                events.filter((e) => e.event === "failed" || e.event === "committed").map((e) => e.session),
              );
              return events.filter((e) => e.event === "session").every((e) => ended.has(e.session));
            };
            for (let waited = 0; !settled() && waited < 15_000; waited += 50) {
              await new Promise((resolve) => setTimeout(resolve, 50));
            }
            assert.ok(settled(), "the receiver never ended the session of a killed pusher");
          }
          // A kill that landed after the commit interrupted nothing.
          if (finished.code !== 0) kills[victim]++;
          // What the interruption left on disk that the next session cannot reuse.
          const wasted = wastedPartialBytes(stagingDir);
          worst.push(wasted);
          assert.ok(
            wasted <= MAX_CHUNK,
            `kill of the ${victim} at ${Math.round(killAt!)} ms wasted ${wasted} bytes`,
          );
          // Staged work is resumable while its tree stands; a kill inside a commit, after the
          // tree became the new version, leaves none.
          expectResume =
            finished.code !== 0 &&
            existsSync(join(stagingDir, "journal.jsonl")) &&
            existsSync(join(stagingDir, "tree"));
          if (victim === "receiver") receiver = await startReceiverProcess(root, receiverCerts);
          if (finished.code === 0) break;
        }
        const compared = await runOffsite([
          "compare",
          source,
          "--to",
          `127.0.0.1:${receiver.port}`,
          "--certs",
          clientCerts,
          "--checksum",
          "--json",
        ]);
        assert.equal(compared.code, 0, `job ${job}: ${compared.stdout} ${compared.stderr}`);
      }
      assert.ok(enough(), `only ${kills.receiver} receiver and ${kills.pusher} pusher kills landed mid-job`);
      t.diagnostic(
        `${kills.receiver} receiver and ${kills.pusher} pusher kills; bytes wasted per kill at most ${Math.max(...worst)} (limit ${MAX_CHUNK})`,
      );

      const restored = join(work, "restored");
      const restore = await runOffsite([
        "restore",
        "--from",
        `127.0.0.1:${receiver.port}`,
        "--certs",
        clientCerts,
        "--json",
        restored,
      ]);
      assert.equal(restore.code, 0, restore.stderr);
      const files = readdirSync(source, { recursive: true, encoding: "utf8" }).filter((p) =>
        statSync(join(source, p)).isFile(),
      );
      for (const path of files)
        assert.ok(readFileSync(join(restored, path)).equals(readFileSync(join(source, path))), path);
      assert.ok(reportOf<{ files: number }>(restore).files === files.length);
    } finally {
      await receiver?.stop();
      rmSync(work, { recursive: true, force: true });
    }
  });
});
