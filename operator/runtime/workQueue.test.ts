import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { WorkQueue, backoffDelay } from "./workQueue.ts";

function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

async function until(condition: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  assert.fail(`never happened: ${what}`);
}

describe("WorkQueue", () => {
  it("never reconciles one key twice at once, and reruns a key changed while it ran", async () => {
    let running = 0;
    let maxRunning = 0;
    const gate = deferred();
    const calls: string[] = [];
    const queue = new WorkQueue({
      concurrency: 4,
      reconcile: async (key) => {
        calls.push(key);
        running++;
        maxRunning = Math.max(maxRunning, running);
        if (calls.length === 1) await gate.promise;
        running--;
      },
    });
    queue.add("ns/a");
    await until(() => calls.length === 1, "first reconcile");
    queue.add("ns/a"); // arrives while ns/a runs
    queue.add("ns/a"); // and again: still one rerun
    assert.equal(calls.length, 1);
    gate.resolve();
    await until(() => calls.length === 2, "the rerun");
    await queue.shutdown();
    assert.deepEqual(calls, ["ns/a", "ns/a"]);
    assert.equal(maxRunning, 1);
  });

  it("runs different keys in parallel up to the concurrency", async () => {
    const gate = deferred();
    let running = 0;
    let maxRunning = 0;
    const queue = new WorkQueue({
      concurrency: 2,
      reconcile: async () => {
        running++;
        maxRunning = Math.max(maxRunning, running);
        await gate.promise;
        running--;
      },
    });
    for (const key of ["a", "b", "c", "d"]) queue.add(key);
    await until(() => running === 2, "two running");
    assert.equal(queue.depth, 2, "the other two wait");
    gate.resolve();
    await until(() => queue.depth === 0 && running === 0, "all done");
    await queue.shutdown();
    assert.equal(maxRunning, 2);
  });

  it("deduplicates keys waiting in the queue", async () => {
    const gate = deferred();
    const calls: string[] = [];
    const queue = new WorkQueue({
      concurrency: 1,
      reconcile: async (key) => {
        calls.push(key);
        if (key === "block") await gate.promise;
      },
    });
    queue.add("block");
    await until(() => calls.length === 1, "blocker running");
    queue.add("x");
    queue.add("x");
    queue.add("y");
    queue.add("x");
    assert.equal(queue.depth, 2);
    gate.resolve();
    await until(() => calls.length === 3, "x and y");
    await queue.shutdown();
    assert.deepEqual(calls, ["block", "x", "y"]);
  });

  it("retries failures with exponential back-off and resets it after a success", async () => {
    const delays: number[] = [];
    let attempts = 0;
    const queue = new WorkQueue({
      concurrency: 1,
      baseDelayMs: 2,
      maxDelayMs: 16,
      reconcile: async () => {
        attempts++;
        if (attempts <= 6) throw new Error(`conflict ${attempts}`);
        return undefined;
      },
      onError: (_key, _error, delay) => delays.push(delay),
    });
    queue.add("k");
    await until(() => attempts === 7, "the seventh attempt succeeds");
    assert.deepEqual(delays, [2, 4, 8, 16, 16, 16]);
    // A success resets the back-off: the next failure waits the base delay again.
    attempts = 0;
    delays.length = 0;
    queue.add("k");
    await until(() => delays.length >= 1, "a new failure");
    assert.equal(delays[0], 2);
    await queue.shutdown();
  });

  it("requeues after the delay a reconcile asks for", async () => {
    let calls = 0;
    const queue = new WorkQueue({
      concurrency: 1,
      reconcile: async () => {
        calls++;
        return calls === 1 ? { requeueAfterMs: 10 } : undefined;
      },
    });
    queue.add("k");
    await until(() => calls === 2, "the requeue");
    await new Promise((resolve) => setTimeout(resolve, 30));
    assert.equal(calls, 2, "no further requeue without asking");
    await queue.shutdown();
  });

  it("lets an event bypass a pending back-off", async () => {
    let calls = 0;
    const queue = new WorkQueue({
      concurrency: 1,
      baseDelayMs: 60_000,
      reconcile: async () => {
        calls++;
        if (calls === 1) throw new Error("transient");
      },
    });
    queue.add("k");
    await until(() => calls === 1, "first attempt");
    queue.add("k"); // an update event: no minute-long wait
    await until(() => calls === 2, "immediate second attempt");
    await queue.shutdown();
  });

  it("on shutdown finishes reconciles in flight and takes no new work", async () => {
    const gate = deferred();
    const finished: string[] = [];
    const queue = new WorkQueue({
      concurrency: 1,
      reconcile: async (key) => {
        await gate.promise;
        finished.push(key);
      },
    });
    queue.add("a");
    queue.add("b");
    await until(() => queue.depth === 1, "a running, b waiting");
    const stopped = queue.shutdown();
    queue.add("c");
    gate.resolve();
    await stopped;
    assert.deepEqual(finished, ["a"]);
  });

  it("computes delays that double and stop at the maximum", () => {
    assert.deepEqual(
      [1, 2, 3, 4, 5, 30].map((n) => backoffDelay(n, 100, 1000)),
      [100, 200, 400, 800, 1000, 1000],
    );
  });
});
