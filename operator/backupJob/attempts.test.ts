/**
 * The tracker of open agent streams, with a fake CallAgent whose calls the test settles
 * by hand and a clock it sets.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import type { JobProgress, JobRequest, JobResult } from "../../contract/reports.ts";
import { AttemptTracker, type AgentAddress, type CallAgent, type Connection } from "./attempts.ts";

interface Call {
  address: AgentAddress;
  request: JobRequest;
  signal: AbortSignal;
  progress: (p: Partial<JobProgress>) => void;
  resolve: (result: JobResult) => void;
  reject: (error: Error) => void;
}

function aFakeAgent() {
  const calls: Call[] = [];
  const call: CallAgent = (address, request, hooks) =>
    new Promise<JobResult>((resolve, reject) => {
      calls.push({
        address,
        request,
        signal: hooks.signal,
        progress: (p) =>
          hooks.onProgress({
            type: "progress",
            jobId: request.jobId,
            at: "2026-12-02T03:15:00Z",
            phase: "sending",
            filesDone: 0,
            filesTotal: 0,
            bytesDone: 0,
            bytesTotal: 0,
            ...p,
          }),
        resolve,
        reject,
      });
    });
  return { calls, call };
}

function aClock(start = 1_000_000) {
  const clock = { at: start, now: () => clock.at, advance: (ms: number) => (clock.at += ms) };
  return clock;
}

const connectionTo = (host: string, jobId = "job-1"): Connection => ({
  address: { host, port: 5723 },
  request: { jobId } as JobRequest,
  credentials: { cert: "cert", key: "key", ca: "ca" },
});

function aResult(jobId = "job-1"): JobResult {
  return {
    type: "result",
    jobId,
    at: "2026-12-02T03:16:00Z",
    outcome: "succeeded",
    version: "20261202T031600Z",
    files: { scanned: 1, changed: 1, deleted: 0, filtered: 0, stopped: 0 },
    bytes: { sent: 10, changed: 10 },
    problems: [],
  };
}

/** Lets settled promises run their callbacks. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

describe("the attempt tracker", () => {
  it("opens one stream per job id, even for concurrent ensure() calls", async () => {
    const agent = aFakeAgent();
    const tracker = new AttemptTracker(agent.call, aClock().now);
    let built = 0;
    const connection = async () => {
      built++;
      await settle(); // building it takes a while (credentials, the request)
      return connectionTo("10.0.0.7");
    };
    const views = await Promise.all([
      tracker.ensure("job-1", "db-0", connection),
      tracker.ensure("job-1", "db-0", connection),
      tracker.ensure("job-1", "db-0", connection),
    ]);
    assert.equal(built, 1, "the connection is built once");
    assert.equal(agent.calls.length, 1);
    assert.deepEqual(agent.calls[0]!.address, { host: "10.0.0.7", port: 5723 });
    for (const view of views) assert.deepEqual(view, { jobId: "job-1", agent: "db-0", failures: 0 });
    await tracker.ensure("job-1", "db-0", connection);
    assert.equal(agent.calls.length, 1, "a later reconcile finds the stream open");

    await tracker.ensure("job-2", "db-0", async () => connectionTo("10.0.0.7", "job-2"));
    assert.equal(agent.calls.length, 2, "another job has a stream of its own");
    assert.deepEqual(tracker.jobIds().sort(), ["job-1", "job-2"]);
  });

  it("reports progress with the recent rate and the time left", async () => {
    const agent = aFakeAgent();
    const clock = aClock();
    const tracker = new AttemptTracker(agent.call, clock.now);
    await tracker.ensure("job-1", "db-0", async () => connectionTo("10.0.0.7"));
    const stream = agent.calls[0]!;

    stream.progress({ bytesDone: 0, bytesTotal: 50_000_000 });
    let view = await tracker.ensure("job-1", "db-0", async () => assert.fail("no second stream"));
    assert.equal(view.progress?.bytesTotal, 50_000_000);
    assert.equal(view.bytesPerSecond, undefined, "one sample is no rate");
    assert.equal(view.etaSeconds, undefined);

    clock.advance(10_000);
    stream.progress({ bytesDone: 10_000_000, bytesTotal: 50_000_000, filesDone: 3 });
    view = await tracker.ensure("job-1", "db-0", async () => assert.fail("no second stream"));
    assert.equal(view.progress?.filesDone, 3);
    assert.equal(view.bytesPerSecond, 1_000_000);
    assert.equal(view.etaSeconds, 40);

    // The rate is of the last 30 s: the sample from 40 s ago no longer counts.
    clock.advance(30_000);
    stream.progress({ bytesDone: 40_000_000, bytesTotal: 50_000_000 });
    view = await tracker.ensure("job-1", "db-0", async () => assert.fail("no second stream"));
    assert.equal(view.bytesPerSecond, 1_000_000);
    assert.equal(view.etaSeconds, 10);

    // A stalled transfer has no rate to estimate from.
    clock.advance(31_000);
    stream.progress({ bytesDone: 40_000_000, bytesTotal: 50_000_000 });
    clock.advance(5_000);
    stream.progress({ bytesDone: 40_000_000, bytesTotal: 50_000_000 });
    view = await tracker.ensure("job-1", "db-0", async () => assert.fail("no second stream"));
    assert.equal(view.bytesPerSecond, 0);
    assert.equal(view.etaSeconds, undefined);
  });

  it("keeps the result until forget(), without opening the stream again", async () => {
    const agent = aFakeAgent();
    const tracker = new AttemptTracker(agent.call, aClock().now);
    await tracker.ensure("job-1", "db-0", async () => connectionTo("10.0.0.7"));
    agent.calls[0]!.resolve(aResult());
    await settle();
    for (let i = 0; i < 3; i++) {
      const view = await tracker.ensure("job-1", "db-0", async () => connectionTo("10.0.0.7"));
      assert.deepEqual(view.result, aResult());
      assert.equal(view.error, undefined);
    }
    assert.equal(agent.calls.length, 1);
    tracker.forget("job-1");
    assert.deepEqual(tracker.jobIds(), []);
    const view = await tracker.ensure("job-1", "db-0", async () => connectionTo("10.0.0.7"));
    assert.equal(view.result, undefined, "forgotten: asked again (the agent answers with its result)");
    assert.equal(agent.calls.length, 2);
    tracker.forget("no-such-job");
  });

  it("counts failed connections and retries only after the reconnect delay", async () => {
    const agent = aFakeAgent();
    const clock = aClock();
    const tracker = new AttemptTracker(agent.call, clock.now);
    const connection = async () => connectionTo("10.0.0.7");
    await tracker.ensure("job-1", "db-0", connection);
    agent.calls[0]!.reject(new Error("connect ECONNREFUSED 10.0.0.7:5723"));
    await settle();

    let view = await tracker.ensure("job-1", "db-0", connection);
    assert.equal(view.failures, 1);
    assert.equal(view.error, "connect ECONNREFUSED 10.0.0.7:5723");
    clock.advance(1_999);
    view = await tracker.ensure("job-1", "db-0", connection);
    assert.equal(view.failures, 1);
    assert.equal(agent.calls.length, 1, "not before the delay");

    clock.advance(1);
    await tracker.ensure("job-1", "db-0", connection);
    assert.equal(agent.calls.length, 2);
    assert.notEqual(agent.calls[1]!.signal, agent.calls[0]!.signal);
    agent.calls[1]!.reject(new Error("socket hang up"));
    await settle();
    view = await tracker.ensure("job-1", "db-0", connection);
    assert.equal(view.failures, 2, "in a row");
    assert.equal(view.error, "socket hang up");

    // A stream that answers again clears them.
    clock.advance(2_000);
    await tracker.ensure("job-1", "db-0", connection);
    agent.calls[2]!.progress({ bytesDone: 1, bytesTotal: 2 });
    view = await tracker.ensure("job-1", "db-0", connection);
    assert.equal(view.failures, 0);
    assert.equal(view.error, undefined);
    agent.calls[2]!.resolve(aResult());
    await settle();
    view = await tracker.ensure("job-1", "db-0", connection);
    assert.equal(view.failures, 0);
    assert.ok(view.result);
  });

  it("tries again at the next ensure() when building the connection failed", async () => {
    const agent = aFakeAgent();
    const tracker = new AttemptTracker(agent.call, aClock().now);
    await assert.rejects(
      tracker.ensure("job-1", "db-0", async () => {
        throw new Error("no control credentials yet");
      }),
      /no control credentials yet/,
    );
    assert.equal(agent.calls.length, 0);
    await tracker.ensure("job-1", "db-0", async () => connectionTo("10.0.0.7"));
    assert.equal(agent.calls.length, 1);
  });

  it("aborts the stream on forget(), and a stream ended so is no failure", async () => {
    const agent = aFakeAgent();
    const tracker = new AttemptTracker(agent.call, aClock().now);
    await tracker.ensure("job-1", "db-0", async () => connectionTo("10.0.0.7"));
    const { signal, reject } = agent.calls[0]!;
    assert.equal(signal.aborted, false);
    tracker.forget("job-1");
    assert.equal(signal.aborted, true);
    reject(new Error("aborted"));
    await settle();
    assert.deepEqual(tracker.jobIds(), []);
  });

  it("opens no stream for an attempt forgotten while its connection was being built", async () => {
    const agent = aFakeAgent();
    const tracker = new AttemptTracker(agent.call, aClock().now);
    let release!: () => void;
    const slow = new Promise<void>((resolve) => (release = resolve));
    const ensured = tracker.ensure("job-1", "db-0", async () => {
      await slow;
      return connectionTo("10.0.0.7");
    });
    tracker.forget("job-1");
    release();
    await ensured;
    await settle();
    // A stream opened now could never be aborted: nothing holds it any more.
    assert.ok(
      agent.calls.every((c) => c.signal.aborted),
      "no stream is left open",
    );
    assert.deepEqual(tracker.jobIds(), []);
  });

  it("opens no stream to the old agent when the agent changed while its connection was being built", async () => {
    const agent = aFakeAgent();
    const tracker = new AttemptTracker(agent.call, aClock().now);
    let release!: () => void;
    const slow = new Promise<void>((resolve) => (release = resolve));
    const toOld = tracker.ensure("job-1", "db-0", async () => {
      await slow;
      return connectionTo("10.0.0.7");
    });
    await tracker.ensure("job-1", "db-1", async () => connectionTo("10.0.0.8"));
    release();
    await toOld;
    await settle();
    const open = agent.calls.filter((c) => !c.signal.aborted);
    assert.deepEqual(
      open.map((c) => c.address.host),
      ["10.0.0.8"],
    );
  });

  it("replaces the entry when the attempt's agent changes", async () => {
    const agent = aFakeAgent();
    const clock = aClock();
    const tracker = new AttemptTracker(agent.call, clock.now);
    await tracker.ensure("job-1", "db-0", async () => connectionTo("10.0.0.7"));
    agent.calls[0]!.reject(new Error("refused"));
    await settle();
    assert.equal((await tracker.ensure("job-1", "db-0", async () => connectionTo("10.0.0.7"))).failures, 1);

    await tracker.ensure("job-1", "db-0", async () => connectionTo("10.0.0.7"));
    assert.equal(agent.calls.length, 1, "still within the reconnect delay");
    const view = await tracker.ensure("job-1", "db-1", async () => connectionTo("10.0.0.8"));
    assert.equal(agent.calls.length, 2, "the new agent is called at once");
    assert.deepEqual(agent.calls[1]!.address, { host: "10.0.0.8", port: 5723 });
    assert.deepEqual(view, { jobId: "job-1", agent: "db-1", failures: 0 });
    assert.equal(agent.calls[0]!.signal.aborted, true);
    assert.deepEqual(tracker.jobIds(), ["job-1"]);

    // A late word from the old agent's stream changes nothing of the new one.
    await tracker.ensure("job-1", "db-2", async () => connectionTo("10.0.0.9"));
    agent.calls[1]!.resolve(aResult());
    await settle();
    const latest = await tracker.ensure("job-1", "db-2", async () => connectionTo("10.0.0.9"));
    assert.equal(latest.agent, "db-2");
    assert.equal(latest.result, undefined);
    assert.equal(agent.calls[1]!.signal.aborted, true);
  });
});
