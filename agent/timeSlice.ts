/**
 * Long synchronous work in slices. Every session, the health endpoint and the control
 * channel share one event loop: work that runs without awaiting anything (frames already
 * queued, a tree being hashed) lets the loop turn once it has held it for a slice, so a
 * liveness probe or another peer's handshake is answered meanwhile.
 */
/** The longest work holds the loop before it lets it turn. */
export const DEFAULT_SLICE_MS = 20;

export class TimeSlice {
  private readonly sliceMs: number;
  private startedAt = performance.now();

  constructor(sliceMs = DEFAULT_SLICE_MS) {
    this.sliceMs = sliceMs;
  }

  /**
   * Lets the event loop turn when the slice is used up (await the promise); undefined, and
   * nothing to await, otherwise: the hot loops that call this per frame pay no microtask.
   */
  yieldIfSpent(): Promise<void> | undefined {
    if (performance.now() - this.startedAt < this.sliceMs) return undefined;
    // setImmediate, not a resolved promise: microtasks run before I/O, and would never let it in.
    return new Promise<void>((resolve) => setImmediate(resolve)).then(() => this.restart());
  }

  /** A new slice begins (the caller just waited for I/O anyway). */
  restart(): void {
    this.startedAt = performance.now();
  }
}
