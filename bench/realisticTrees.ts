/**
 * The rows on realistic trees (workloads.ts: makeSourceTree, makeWebsiteTree), each peer
 * beside the others in the same run, through the same 10 ms relay as B2:
 *
 *   R1   a 20,000-file software tree (node_modules-like): the initial backup (offsite push,
 *        rsync -a) and a commit (0.5% of the files rewritten, 0.2% added, 0.1% deleted)
 *   B2r  the same tree afterwards: one changed file (a 64-byte edit), then no change at all
 *   R2   a 2,500-file website: the initial backup and a publish (5% of the text files
 *        rewritten, 1% added, 0.4% deleted)
 *
 * Incrementals are measured against two rsyncs over its daemon: `rsync -a` updating one
 * mirror, and `rsync -a --link-dest` writing a new tree per version, its unchanged files
 * hard links into the previous one: what an Offsite receiver keeps (a browsable tree per
 * version). The link-dest tree's first version is made, unmeasured, after the initial rows.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { cpuNote, type Peers, type Placement, type Row, log, withProxy } from "./peers.ts";
import { type Tree, changeTree, editOneFile, makeSourceTree, makeWebsiteTree } from "./workloads.ts";

const RTT = 10;

export interface Context {
  peers: Peers;
  work: string;
  scale: number;
  only: Set<string>;
  placements: Placement[];
  row(row: Omit<Row, "placement">): void;
  verdict(text: string): void;
}

const mb = (bytes: number) => `${(bytes / 1e6).toFixed(0)} MB`;
const kb = (bytes: number) => `${(bytes / 1e3).toFixed(0)} kB`;
const ratio = (a: number, b: number) => (a / b).toFixed(2);

/** One placement's three peers on one copy of a tree: offsite, rsync's mirror, rsync's versions. */
async function threePeers(context: Context, name: string, source: string) {
  const { peers, work } = context;
  const receiver = await peers.offsiteReceiver(join(work, `${name}-offsite`));
  const daemon = await peers.rsyncDaemon(join(work, `${name}-rsync`));
  let version = 0;
  return {
    offsite: () => withProxy(receiver.port, RTT, (proxy) => peers.offsitePush(source, proxy.port, receiver)),
    mirror: () => withProxy(daemon.port, RTT, (proxy) => peers.rsyncPush(source, proxy.port, "mirror")),
    linkDest: () => {
      version++;
      const extra = version > 1 ? [`--link-dest=/v${version - 1}`] : [];
      return withProxy(daemon.port, RTT, (proxy) =>
        peers.rsyncPush(source, proxy.port, `v${version}`, extra),
      );
    },
    async stop() {
      await receiver.stop();
      daemon.stop();
      for (const dir of [`${name}-offsite`, `${name}-rsync`, name])
        rmSync(join(work, dir), { recursive: true, force: true });
    },
  };
}

type Peer = Awaited<ReturnType<typeof threePeers>>;

/** Runs the offsite peer and writes its row; "per GiB": its CPU also per GiB of what it sent. */
async function offsiteRow(context: Context, id: string, workload: string, peer: Peer, per?: "per GiB") {
  const offsite = await peer.offsite();
  const note = cpuNote(offsite, per ? offsite.content : undefined);
  context.row({ id, workload, peer: "offsite push", seconds: offsite.seconds, bytes: offsite.wire, note });
  return offsite;
}

/** An incremental's three rows; returns the times and bytes for the verdict. */
async function incremental(context: Context, id: string, workload: string, peer: Peer) {
  const offsite = await offsiteRow(context, id, workload, peer);
  const mirror = await peer.mirror();
  context.row({
    id,
    workload,
    peer: "rsync -a (daemon, one mirror)",
    seconds: mirror.seconds,
    bytes: mirror.sent,
  });
  const linkDest = await peer.linkDest();
  context.row({
    id,
    workload,
    peer: "rsync -a --link-dest (daemon, a hard-linked tree per version)",
    seconds: linkDest.seconds,
    bytes: linkDest.sent,
  });
  log(
    `${id} ${workload}: offsite ${offsite.seconds.toFixed(2)} s, rsync -a ${mirror.seconds.toFixed(2)} s, --link-dest ${linkDest.seconds.toFixed(2)} s`,
  );
  return { offsite, mirror, linkDest };
}

function against(result: Awaited<ReturnType<typeof incremental>>): string {
  return (
    `offsite takes ${ratio(result.offsite.seconds, result.linkDest.seconds)}× rsync --link-dest's time (goal ≤ 1) ` +
    `and ${ratio(result.offsite.seconds, result.mirror.seconds)}× rsync -a's (goal ≤ 2) ` +
    `(${result.offsite.seconds.toFixed(2)} s, ${result.linkDest.seconds.toFixed(2)} s, ${result.mirror.seconds.toFixed(2)} s)`
  );
}

/** The initial backup's two rows (and the link-dest tree's first version, unmeasured). */
async function initial(
  context: Context,
  id: string,
  workload: string,
  peer: Peer,
  tree: Tree,
): Promise<void> {
  const offsite = await offsiteRow(context, id, workload, peer, "per GiB");
  const rsync = await peer.mirror();
  context.row({ id, workload, peer: "rsync -a (daemon)", seconds: rsync.seconds, bytes: rsync.sent });
  await peer.linkDest();
  log(`${id} initial: offsite ${offsite.seconds.toFixed(2)} s, rsync ${rsync.seconds.toFixed(2)} s`);
  context.verdict(
    `${id} initial backup (${tree.files.length} files, ${mb(tree.bytes)}): offsite is ${ratio(rsync.seconds, offsite.seconds)}× rsync's speed (B1's goal > 1).`,
  );
}

function copyTree(from: string, to: string): void {
  rmSync(to, { recursive: true, force: true });
  mkdirSync(dirname(to), { recursive: true });
  const copied = spawnSync("cp", ["-a", from, to]);
  if (copied.status !== 0) throw new Error(`cp -a ${from} ${to}: ${copied.stderr.toString()}`);
}

/** R1 and B2r: the software tree. */
export async function sourceTreeRows(context: Context): Promise<void> {
  const { work, scale, only } = context;
  const files = Math.round(20_000 * scale);
  const pristine = join(work, "r1-pristine");
  log(`R1/B2r: making a ${files}-file source tree`);
  const tree = makeSourceTree(pristine, files, 11);
  const shape = `${files} files in ${tree.dirs} dirs, depth ≤ ${tree.maxDepth}, ${mb(tree.bytes)}`;
  for (const placement of context.placements) {
    context.peers.enter(placement);
    const name = `r1-${placement}`;
    const source = join(work, name, "tree");
    copyTree(pristine, source);
    const peer = await threePeers(context, name, source);
    let now = tree;
    if (only.has("R1")) {
      await initial(context, "R1", `source tree, initial: ${shape}, ${RTT} ms RTT`, peer, tree);
      const commit = changeTree(
        source,
        tree,
        {
          modify: Math.round(files * 0.005),
          add: Math.round(files * 0.002),
          remove: Math.round(files * 0.001),
          textOnly: true,
        },
        12,
      );
      now = commit.tree;
      const c = commit.change;
      const workload = `source tree, a commit: ${c.modified} rewritten, ${c.added} added, ${c.deleted} deleted (${kb(c.changedBytes)} new), ${RTT} ms RTT`;
      const result = await incremental(context, "R1", workload, peer);
      context.verdict(
        `R1 commit: ${against(result)}; sends ${kb(result.offsite.wire)} for ${kb(c.changedBytes)} of new content (rsync -a ${kb(result.mirror.sent)}).`,
      );
    } else {
      await peer.offsite();
      await peer.mirror();
      await peer.linkDest();
    }
    if (only.has("B2r")) {
      const edited = editOneFile(source, now, 13);
      log(`B2r: edited ${edited}`);
      const one = await incremental(
        context,
        "B2r",
        `one changed file (64 B) in the source tree (${shape}), ${RTT} ms RTT`,
        peer,
      );
      context.verdict(`B2r one changed file in a ${now.files.length}-file tree: ${against(one)}.`);
      const none = await incremental(context, "B2r", `no change, the same tree, ${RTT} ms RTT`, peer);
      context.verdict(
        `B2r no change: offsite takes ${ratio(none.offsite.seconds, none.linkDest.seconds)}× rsync --link-dest's time and ` +
          `${ratio(none.offsite.seconds, none.mirror.seconds)}× rsync -a's (no goal of its own; the floor under B2r).`,
      );
    }
    await peer.stop();
  }
  rmSync(pristine, { recursive: true, force: true });
}

/** R2: the website. */
export async function websiteRows(context: Context): Promise<void> {
  const { work, scale } = context;
  const files = Math.round(2_500 * scale);
  const pristine = join(work, "r2-pristine");
  log(`R2: making a ${files}-file website`);
  const tree = makeWebsiteTree(pristine, files, 21);
  const shape = `${files} files in ${tree.dirs} dirs, depth ≤ ${tree.maxDepth}, ${mb(tree.bytes)}`;
  for (const placement of context.placements) {
    context.peers.enter(placement);
    const name = `r2-${placement}`;
    const source = join(work, name, "tree");
    copyTree(pristine, source);
    const peer = await threePeers(context, name, source);
    await initial(context, "R2", `website, initial: ${shape}, ${RTT} ms RTT`, peer, tree);
    const publish = changeTree(
      source,
      tree,
      {
        modify: Math.round(files * 0.05),
        add: Math.max(1, Math.round(files * 0.01)),
        remove: Math.round(files * 0.004),
      },
      22,
    ).change;
    const workload = `website, a publish: ${publish.modified} rewritten, ${publish.added} added, ${publish.deleted} deleted (${kb(publish.changedBytes)} new), ${RTT} ms RTT`;
    const result = await incremental(context, "R2", workload, peer);
    context.verdict(
      `R2 publish: ${against(result)}; sends ${kb(result.offsite.wire)} for ${kb(publish.changedBytes)} of new content (rsync -a ${kb(result.mirror.sent)}).`,
    );
    await peer.stop();
  }
  rmSync(pristine, { recursive: true, force: true });
}
