/**
 * Long synchronous work in slices. Every session, the health endpoint and the control
 * channel share one event loop: work that runs without awaiting anything (frames already
 * queued, a tree being hashed) lets the loop turn once it has held it for a slice, so a
 * liveness probe or another peer's handshake is answered meanwhile.
 */
export class TimeSlice {
  private readonly sliceMs: number;
  private startedAt = performance.now();

  constructor(sliceMs: number) {
    this.sliceMs = sliceMs;
  }

  /** Lets the event loop turn when the slice is used up; resolves at once otherwise. */
  async yieldIfSpent(): Promise<void> {
    if (performance.now() - this.startedAt < this.sliceMs) return;
    // setImmediate, not a resolved promise: microtasks run before I/O, and would never let it in.
    await new Promise((resolve) => setImmediate(resolve));
    this.startedAt = performance.now();
  }

  /** A new slice begins (the caller just waited for I/O anyway). */
  restart(): void {
    this.startedAt = performance.now();
  }
}
