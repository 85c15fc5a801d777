/**
 * The pusher's side of the small-file delta (PROTOCOL.md, "Small-file delta"): before the
 * first file goes, it names the changed small files whose older copy the receiver has
 * (SignatureRequest), and reads their Signatures as they come while it goes on sending,
 * so the receiver, which answers in the middle of the stream, is never blocked writing to
 * a client that does not read. One round trip per job, overlapped with the sending.
 */
import type { FramedConnection } from "../protocol/connection.ts";
import { FrameType, ProtocolError } from "../protocol/frames.ts";
import { encodeJson } from "../protocol/messages.ts";
import type { BlockSignature } from "../transfer/smallFileDelta.ts";

const PATHS_PER_REQUEST = 10_000;

export class SignatureFetch {
  private readonly signatures = new Map<string, Promise<BlockSignature | undefined>>();
  private readonly received: Promise<void>;

  private constructor(connection: FramedConnection, paths: readonly string[]) {
    const resolvers = new Map<string, (signature: BlockSignature | undefined) => void>();
    for (const path of paths)
      this.signatures.set(path, new Promise((resolve) => resolvers.set(path, resolve)));
    this.received = (async () => {
      for (const wanted of paths) {
        const message = await connection.next();
        if (message.type !== FrameType.Signatures || message.path !== wanted) {
          throw new ProtocolError(
            "unexpected-frame",
            `the receiver sent ${message.type === FrameType.Signatures ? `signatures of ${JSON.stringify(message.path)}` : `a ${message.type} frame`} where those of ${JSON.stringify(wanted)} belong`,
          );
        }
        resolvers.get(wanted)!(message.signature);
      }
    })();
    // A failure surfaces where the job waits: on a signature, or before Commit.
    this.received.catch(() => undefined);
  }

  /** Asks for the signatures of `paths` (files of the receiver's base) and starts reading them. */
  static async start(connection: FramedConnection, paths: readonly string[]): Promise<SignatureFetch> {
    for (let start = 0; start < paths.length; start += PATHS_PER_REQUEST) {
      await connection.send(
        encodeJson(FrameType.SignatureRequest, { paths: paths.slice(start, start + PATHS_PER_REQUEST) }),
      );
    }
    return new SignatureFetch(connection, paths);
  }

  /** The signatures of `path` (undefined: the receiver has none to offer), or undefined if not asked for. */
  async signatureOf(path: string): Promise<BlockSignature | undefined> {
    const signature = this.signatures.get(path);
    if (!signature) return undefined;
    // Whichever comes first: this one, or the failure that stops them all.
    return Promise.race([signature, this.received.then(() => signature)]);
  }

  /** Every signature asked for has arrived (the job waits for this before Commit). */
  done(): Promise<void> {
    return this.received;
  }
}
