/**
 * A framed, typed message stream over one socket (TLS in practice). Reading pauses the
 * socket while decoded messages wait, so a fast peer cannot fill our memory; writing
 * waits for 'drain', so we cannot fill theirs. A ProtocolError from the decoder is sent
 * to the peer as an Error frame before the socket closes.
 *
 * With an idle timeout, no wait on the peer lasts for ever: a next() that gets no frame,
 * or a send that waits for a 'drain' that does not come, for that long fails the
 * connection with the timeout's error (PROTOCOL.md, "Timeouts"). Time we spend working
 * between waits does not count: only the peer's silence does.
 */
import type { Duplex } from "node:stream";
import { FrameDecoder, FrameType, frameTypeName, MAX_FRAME_LENGTH, ProtocolError } from "./frames.ts";
import { decodeMessage, encodeJson, type Message, type MessageOf } from "./messages.ts";

const MAX_QUEUED = 64;
const LINGER_MS = 2000;
const COALESCE_BYTES = 256 * 1024;
const SPARE_BUFFERS = 8;

/** The peer reported an error (an Error frame), or the connection ended. */
export class PeerError extends Error {
  readonly code: string;
  readonly path: string | undefined;
  constructor(code: string, message: string, path?: string) {
    super(message);
    this.name = "PeerError";
    this.code = code;
    this.path = path;
  }
}

export interface ConnectionOptions {
  /** Fail a wait on the peer (a frame to read, or room to write) that lasts this long. */
  idleTimeoutMs?: number | undefined;
  /** The error an idle timeout fails the connection with. */
  idleError?: (ms: number) => Error;
}

export class FramedConnection {
  private readonly socket: Duplex;
  private readonly idleTimeoutMs: number | undefined;
  private readonly idleError: (ms: number) => Error;
  private idleTimer: NodeJS.Timeout | undefined;
  /** Sends waiting for 'drain': failed with the connection, and watched by the idle timer. */
  private readonly drainWaits = new Set<(error: Error) => void>();
  private readonly decoder = new FrameDecoder();
  private readonly queue: Message[] = [];
  private waiter: { resolve: (m: Message) => void; reject: (e: Error) => void } | undefined;
  private failure: Error | undefined;
  private aborting: Promise<void> | undefined;
  /** Outgoing frames are copied into this buffer and written when it fills (or the loop turns). */
  private out: Buffer = Buffer.allocUnsafe(COALESCE_BYTES);
  private outUsed = 0;
  /**
   * Outgoing buffers the socket is done with, for reuse: a fresh 256 KiB buffer for every
   * write costs a page fault per 4 KiB, a third of the cost of sending a large file.
   */
  private readonly spareBuffers: Buffer[] = [];
  private flushScheduled = false;
  bytesRead = 0;
  bytesWritten = 0;

  constructor(socket: Duplex, options: ConnectionOptions = {}) {
    this.socket = socket;
    this.idleTimeoutMs = options.idleTimeoutMs;
    this.idleError =
      options.idleError ??
      ((ms) => new PeerError("idle-timeout", `the peer sent and read nothing for ${ms / 1000} s`));
    socket.on("data", (bytes: Buffer) => this.onData(bytes));
    socket.on("error", (error) => this.fail(error));
    socket.on("close", () => this.fail(new PeerError("connection-closed", "the peer closed the connection")));
    socket.on("end", () => this.fail(new PeerError("connection-closed", "the peer closed the connection")));
  }

  /** Whether next() would resolve at once with an already decoded message. */
  get hasQueued(): boolean {
    return this.queue.length > 0;
  }

  /** The next message; rejects with PeerError, ProtocolError or the socket's error. */
  next(): Promise<Message> {
    const queued = this.queue.shift();
    if (queued) {
      if (this.queue.length < MAX_QUEUED / 2 && this.socket.isPaused()) this.socket.resume();
      return Promise.resolve(queued);
    }
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
      this.waitingOnPeer();
    });
  }

  /** The next message, which must be of `type` (an Error frame rejects with PeerError). */
  async expect<T extends Message["type"]>(type: T): Promise<MessageOf<T>> {
    const message = await this.next();
    if (message.type !== type) {
      throw new ProtocolError(
        "unexpected-frame",
        `expected a ${frameTypeName(type)} frame, got ${frameTypeName(message.type)}`,
      );
    }
    return message as MessageOf<T>;
  }

  /**
   * Queues an encoded frame; resolves at once unless the socket's buffer is full. Frames
   * are copied into one outgoing buffer and written COALESCE_BYTES at a time (one TLS
   * record and one system call for dozens of small files, instead of one each); what is
   * queued goes out when the buffer fills or when the event loop next turns, so a caller
   * that awaits a reply never waits on its own unsent frames.
   */
  send(frame: Buffer): Promise<void> | undefined {
    return this.append(frame.length, undefined, [frame]);
  }

  /**
   * Queues a frame of `type` whose payload is `parts` one after the other, copied once,
   * straight into the outgoing buffer: the hot path for file content, which then needs no
   * frame of its own.
   */
  sendParts(type: FrameType, parts: Uint8Array[]): Promise<void> | undefined {
    let payload = 0;
    for (const part of parts) payload += part.length;
    if (payload + 1 > MAX_FRAME_LENGTH) {
      throw new RangeError(`a ${frameTypeName(type)} frame of ${payload} bytes exceeds the frame limit`);
    }
    return this.append(5 + payload, type, parts);
  }

  private append(
    length: number,
    type: FrameType | undefined,
    parts: Uint8Array[],
  ): Promise<void> | undefined {
    // Once the peer has reported an error (or gone), writing on only hides its reason.
    if (this.failure) return Promise.reject(this.failure);
    this.bytesWritten += length;
    let drained: Promise<void> | undefined;
    if (this.outUsed + length > this.out.length) drained = this.flush();
    // A frame larger than the whole buffer (a big Entries or ChunkList) gets one of its own.
    const target = length > this.out.length ? Buffer.allocUnsafe(length) : this.out;
    let at = target === this.out ? this.outUsed : 0;
    if (type !== undefined) {
      target.writeUInt32BE(length - 4, at);
      target[at + 4] = type;
      at += 5;
    }
    for (const part of parts) {
      target.set(part, at);
      at += part.length;
    }
    if (target !== this.out) return this.write(target) ?? drained;
    this.outUsed = at;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => {
        this.flushScheduled = false;
        this.flush()?.catch(() => undefined); // a failure surfaces on the next send or next()
      });
    }
    return drained;
  }

  /**
   * Writes what is queued now rather than when the loop next turns: for a caller about to
   * work a while without awaiting (a failure surfaces on the next send or next()).
   */
  flushNow(): void {
    this.flush()?.catch(() => undefined);
  }

  /** Writes what send() queued. */
  private flush(): Promise<void> | undefined {
    if (this.outUsed === 0) return undefined;
    const written = this.out;
    const bytes = written.subarray(0, this.outUsed);
    // The socket owns the written bytes until its callback says it is done with them; the
    // next frames go to another buffer meanwhile.
    this.out = this.spareBuffers.pop() ?? Buffer.allocUnsafe(COALESCE_BYTES);
    this.outUsed = 0;
    return this.write(bytes, (error) => {
      if (!error && this.spareBuffers.length < SPARE_BUFFERS) this.spareBuffers.push(written);
    });
  }

  private write(bytes: Buffer, done?: (error?: Error | null) => void): Promise<void> | undefined {
    if (this.socket.destroyed) return undefined;
    if (this.socket.write(bytes, done)) return undefined;
    return new Promise((resolve, reject) => {
      const settle = (error?: Error) => {
        this.socket.off("drain", onDrain);
        this.socket.off("close", onClose);
        this.drainWaits.delete(onFail);
        if (error) reject(error);
        else resolve();
      };
      const onDrain = () => settle();
      const onClose = () =>
        settle(this.failure ?? new PeerError("connection-closed", "the peer closed the connection"));
      const onFail = (error: Error) => settle(error);
      this.socket.once("drain", onDrain);
      this.socket.once("close", onClose);
      this.drainWaits.add(onFail);
      this.waitingOnPeer();
    });
  }

  /**
   * A wait on the peer starts: (re)arm the idle timer. One timer per connection, refreshed
   * at each wait, so the hot path costs no timer of its own; when it fires with no wait in
   * progress, we were busy, not the peer, and nothing happens.
   */
  private waitingOnPeer(): void {
    if (this.idleTimeoutMs === undefined || this.failure) return;
    if (this.idleTimer) this.idleTimer.refresh();
    else this.idleTimer = setTimeout(() => this.onIdle(), this.idleTimeoutMs).unref();
  }

  private onIdle(): void {
    if (this.failure || (!this.waiter && this.drainWaits.size === 0)) return;
    this.fail(this.idleError(this.idleTimeoutMs!));
  }

  /**
   * Tells the peer what went wrong, then closes. Never throws. Whatever the peer still
   * sends is read and dropped for a moment (a lingering close): a peer that is busy
   * writing then reads our Error frame instead of a reset connection.
   */
  abort(code: string, message: string, path?: string): Promise<void> {
    this.aborting ??= this.lingeringClose(code, message, path);
    return this.aborting;
  }

  private async lingeringClose(code: string, message: string, path?: string): Promise<void> {
    this.fail(new PeerError(code, message, path));
    this.socket.removeAllListeners("data");
    this.socket.on("data", () => undefined);
    this.socket.resume();
    if (!this.socket.destroyed && this.socket.writable) {
      void this.flush()?.catch(() => undefined);
      const frame = encodeJson(FrameType.Error, {
        code,
        message: message.slice(0, 10_000),
        ...(path !== undefined ? { path } : {}),
      });
      // Bounded: a peer that reads nothing never lets the Error frame out.
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, LINGER_MS);
        this.socket.end(frame, () => {
          clearTimeout(timer);
          resolve();
        });
      });
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, LINGER_MS);
        this.socket.once("close", () => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    this.socket.destroy();
  }

  close(): Promise<void> {
    void this.flush()?.catch(() => undefined);
    return new Promise((resolve) => {
      if (this.socket.destroyed) return resolve();
      this.socket.once("close", () => resolve());
      this.socket.end();
      setTimeout(() => this.socket.destroy(), 5000).unref();
    });
  }

  private onData(bytes: Buffer): void {
    this.bytesRead += bytes.length;
    this.decoder.push(bytes);
    try {
      for (let frame = this.decoder.next(); frame; frame = this.decoder.next()) {
        const message = decodeMessage(frame);
        if (message.type === FrameType.Error) {
          this.fail(new PeerError(message.code, message.message, message.path));
          return;
        }
        this.deliver(message);
      }
    } catch (error) {
      const problem = error as ProtocolError;
      this.fail(problem);
      void this.abort(problem.code ?? "protocol-error", problem.message);
    }
  }

  private deliver(message: Message): void {
    if (this.waiter) {
      const { resolve } = this.waiter;
      this.waiter = undefined;
      resolve(message);
      return;
    }
    this.queue.push(message);
    if (this.queue.length >= MAX_QUEUED) this.socket.pause();
  }

  private fail(error: Error): void {
    if (this.failure) return;
    this.failure = error;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    if (this.waiter) {
      const { reject } = this.waiter;
      this.waiter = undefined;
      reject(error);
    }
    for (const reject of [...this.drainWaits]) reject(error);
  }
}
