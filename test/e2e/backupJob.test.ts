/**
 * BackupJob end to end on the real node, the operator installed by helm: a web
 * application Deployment with a claim and the opt-in label gets the agent sidecar from the
 * operator's webhook (its manifest in the API untouched); a BackupJob with a schedule and
 * a manual trigger makes versions on the OffsiteServer's volume under <site>/<source>/,
 * sent by that sidecar through the Service; the second run sends only what changed;
 * filters and the content firewall keep files on the source; compare finds an edit, an
 * addition and a deletion; restore of the first version makes the application serve the
 * old content again (read through its Service); a claim without a sidecar is backed up by
 * a mover pod that is gone afterwards; and wrong input gives Ready=False with a reason.
 *
 * Everything runs for real: the agent and operator images built here, kubelet probes,
 * kube-proxy, CoreDNS (the sidecar reaches `vault.<ns>.svc`), local volumes on the node.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { closeSync, openSync, readFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { realNodeUnavailable, usingExistingCluster } from "../cluster/testCluster.ts";
import { APP, APP_DATA, BackupScene, SERVER, condition } from "./fixtures/backupScene.ts";
import { kubectlOk } from "./fixtures/operatorRelease.ts";
import { eventually } from "./fixtures/polling.ts";
import { idleContainer } from "./fixtures/idleContainer.ts";
import { inertRandomBytes } from "../agent/testSupport.ts";

const MiB = 1024 * 1024;
const sha256 = (data: Buffer | string) => createHash("sha256").update(data).digest("hex");

const skip =
  realNodeUnavailable() ?? (usingExistingCluster() ? "reads the node's volumes from the host" : undefined);

describe("BackupJob on the real node: sidecar push agents, compare, restore, mover pods", { skip }, () => {
  let scene: BackupScene;
  let firstVersion = "";
  const contents = new Map<string, Buffer>();
  let firstContents = new Map<string, Buffer>();

  const inSuite = (args: string[], input?: string) => scene.inSuite(args, input);
  const apply = (object: unknown) => scene.apply(object);
  const jobStatus = (name: string) => scene.jobStatus(name);
  const app = (method: string, path: string, body?: Buffer) => scene.app(method, path, body);
  const upload = async (name: string, data: Buffer) => {
    await app("PUT", `/files/${name}`, data);
    contents.set(name, data);
  };

  before(async () => {
    scene = await BackupScene.start();
  });

  after(async () => {
    await scene?.stop();
  });

  it("injects the agent sidecar into the opted-in pods of a BackupJob's selector; the Deployment stays as written", async () => {
    await apply({
      apiVersion: "offsite.dev/v1alpha1",
      kind: "BackupJob",
      metadata: { name: "web-backup", namespace: scene.ns },
      spec: {
        source: { podSelector: { matchLabels: { app: APP } }, path: `${APP_DATA}/files` },
        target: { offsiteServer: { name: SERVER } },
        schedule: "*/1 * * * *",
        manualTrigger: "first",
        filters: { exclude: ["**/*.tmp"] },
        contentFirewall: { enabled: true },
      },
    });
    await scene.startWebApp(scene.cluster.images!.webApp.ref);
    const pods = JSON.parse(await inSuite(["get", "pods", "-l", `app=${APP}`, "-o", "json"])) as {
      items: {
        spec: {
          initContainers?: {
            name: string;
            restartPolicy?: string;
            volumeMounts?: { mountPath: string; readOnly?: boolean }[];
          }[];
        };
        status: { initContainerStatuses?: { name: string; started?: boolean }[] };
      }[];
    };
    assert.equal(pods.items.length, 1);
    const sidecars = (pods.items[0]!.spec.initContainers ?? []).filter((c) => c.name === "offsite-agent");
    assert.equal(sidecars.length, 1, "exactly one sidecar");
    assert.equal(sidecars[0]!.restartPolicy, "Always");
    const dataMount = sidecars[0]!.volumeMounts!.find((m) => m.mountPath === APP_DATA);
    assert.equal(dataMount?.readOnly, true, "the sidecar sees the data read-only, at the app's path");
    const deployment = JSON.parse(await inSuite(["get", "deployment", APP, "-o", "json"])) as {
      spec: { template: { spec: { initContainers?: unknown[]; containers: { name: string }[] } } };
    };
    assert.equal(
      deployment.spec.template.spec.initContainers,
      undefined,
      "the Deployment in the API is unchanged",
    );
    assert.deepEqual(
      deployment.spec.template.spec.containers.map((c) => c.name),
      ["web"],
    );
  });

  it("backs the application's files up from the sidecar to the OffsiteServer's volume, filters and firewall applied on the agent", async () => {
    await upload("index.html", Buffer.from("<h1>version one</h1>\n"));
    await upload("photo.bin", inertRandomBytes(8 * MiB));
    for (let i = 0; i < 20; i++) await upload(`note-${i}.txt`, inertRandomBytes(2000 + i));
    await app("PUT", "/files/cache.tmp", Buffer.from("scratch"));
    await app("PUT", "/files/shell.php", Buffer.from("<?php system($_GET['c']); ?>\n"));
    await app("PUT", "/files/run.sh", Buffer.from("#!/bin/sh\nrm -rf /\n"));
    // The first run may have started before the uploads (the job exists before its pod):
    // trigger one that surely sees them.
    const before = (await jobStatus("web-backup")).lastRun?.id;
    await scene.trigger("web-backup", "uploads-done");
    const { run, status } = await scene.waitRun("web-backup", before, "uploads-done");
    assert.equal(run.result, "Succeeded", `${run.reason}: ${run.message}`);
    assert.ok(run.version, "the run names its version");
    firstVersion = run.version!;
    firstContents = new Map(contents);
    assert.ok((run.filesFiltered ?? 0) >= 1, "cache.tmp counted as filtered");
    assert.ok((run.filesStopped ?? 0) >= 2, "shell.php and run.sh counted as stopped");
    assert.ok(status.siteGUID && status.sourceGUID, "GUIDs in status");
    const kubeSystem = JSON.parse(
      await kubectlOk(scene.cluster, ["get", "namespace", "kube-system", "-o", "json"]),
    ) as {
      metadata: { uid: string };
    };
    const job = JSON.parse(await inSuite(["get", "backupjob", "web-backup", "-o", "json"])) as {
      metadata: { uid: string };
    };
    assert.equal(status.siteGUID, kubeSystem.metadata.uid, "the site GUID defaults to kube-system's UID");
    assert.equal(status.sourceGUID, job.metadata.uid, "the source GUID defaults to the job's UID");
    const tree = await scene.versionTree(status, firstVersion);
    for (const [name, data] of contents)
      assert.equal(sha256(readFileSync(join(tree, name))), sha256(data), name);
    for (const kept of ["cache.tmp", "shell.php", "run.sh"])
      assert.throws(() => readFileSync(join(tree, kept)), /ENOENT/, `${kept} never reached the receiver`);
    assert.equal(condition(status, "Ready")?.status, "True", condition(status, "Ready")?.message);
    // The receiver's check-ins: the OffsiteServer lists the source Online, with its versions.
    const listed = await eventually(
      "the source Online in the OffsiteServer's status",
      async () => {
        const server = JSON.parse(await inSuite(["get", "offsiteserver", SERVER, "-o", "json"])) as {
          status?: {
            sources?: {
              site: string;
              source: string;
              state: string;
              name?: string;
              versions?: number;
              lastCheckIn?: string;
            }[];
          };
        };
        const entry = server.status?.sources?.find(
          (s) => s.site === status.siteGUID && s.source === status.sourceGUID,
        );
        return entry?.state === "Online" && (entry.versions ?? 0) >= 1 ? entry : undefined;
      },
      90_000,
      1000,
    );
    assert.equal(listed.name, `${scene.ns}/web-backup`);
    assert.ok(listed.lastCheckIn);
  });

  it("the next run sends only what changed: a small file, and a few bytes inside a large one", async () => {
    await upload("index.html", Buffer.from("<h1>version two</h1>\n"));
    // An edit in place in the middle of the large file, on the node's volume.
    const photo = join(await scene.claimPath(`${APP}-data`), "files", "photo.bin");
    const fd = openSync(photo, "r+");
    writeSync(fd, Buffer.from("edited in place"), 0, 15, 4 * MiB);
    closeSync(fd);
    contents.set("photo.bin", readFileSync(photo));
    const before = (await jobStatus("web-backup")).lastRun?.id;
    await scene.trigger("web-backup", "second");
    const { run, status } = await scene.waitRun("web-backup", before, "second");
    assert.equal(run.result, "Succeeded", `${run.reason}: ${run.message}`);
    // The every-minute schedule may have taken part of the change in a run of its own: count
    // every run since the edits.
    const since = status.history!.slice(
      0,
      status.history!.findIndex((r) => r.id === before) + 1 || undefined,
    );
    const runs = since.filter((r) => r.id !== before);
    assert.ok(
      runs.every((r) => r.result === "Succeeded"),
      JSON.stringify(runs),
    );
    const changed = runs.reduce((n, r) => n + (r.filesChanged ?? 0), 0);
    const sent = runs.reduce((n, r) => n + (r.bytesSent ?? 0), 0);
    assert.equal(changed, 2, JSON.stringify(runs));
    // Metadata and chunk framing on top of the changed bytes: a small fraction of the file.
    assert.ok(sent < 0.1 * 8 * MiB, `bytesSent ${sent} for a 15-byte edit in 8 MiB and a 21-byte file`);
    const tree = await scene.versionTree(status, run.version!);
    assert.equal(sha256(readFileSync(join(tree, "photo.bin"))), sha256(contents.get("photo.bin")!));
    assert.equal(readFileSync(join(tree, "index.html"), "utf8"), "<h1>version two</h1>\n");
    // The first version is intact.
    assert.equal(
      readFileSync(join(await scene.versionTree(status, firstVersion), "index.html"), "utf8"),
      "<h1>version one</h1>\n",
    );
  });

  it("changed small files cost their size plus a little metadata on the wire", async () => {
    for (let i = 0; i < 20; i++) await upload(`note-${i}.txt`, inertRandomBytes(4096));
    const before = (await jobStatus("web-backup")).lastRun?.id;
    await scene.trigger("web-backup", "small-files");
    const { status } = await scene.waitRun("web-backup", before, "small-files");
    const since = status.history!.slice(
      0,
      status.history!.findIndex((r) => r.id === before) + 1 || undefined,
    );
    const runs = since.filter((r) => r.id !== before);
    const changed = runs.reduce((n, r) => n + (r.filesChanged ?? 0), 0);
    const changedBytes = runs.reduce((n, r) => n + (r.bytesChanged ?? 0), 0);
    const sent = runs.reduce((n, r) => n + (r.bytesSent ?? 0), 0);
    assert.equal(changed, 20, JSON.stringify(runs));
    assert.equal(changedBytes, 20 * 4096);
    // Within 10% of the changed bytes plus each file's header (path, size, mode, mtime, hash).
    const metadata = 20 * 300;
    assert.ok(sent <= 1.1 * (changedBytes + metadata), `${sent} bytes sent for ${changedBytes} changed`);
    process.stderr.write(
      `[backupJob] 20 changed 4 KiB files: ${sent} bytes sent for ${changedBytes} changed\n`,
    );
  });

  it("the schedule runs the job every minute beside the manual triggers", async () => {
    const status = await eventually(
      "a run started by the schedule",
      async () => {
        const s = await jobStatus("web-backup");
        return [s.lastRun, ...(s.history ?? [])].some((r) => r?.trigger === "Schedule") ? s : undefined;
      },
      150_000,
      2000,
    );
    assert.ok(status.history!.length >= 2);
  });

  it("compare reports an edited, an added and a deleted file", async () => {
    // No scheduled backup may take the edits in before the compare.
    await scene.suspend("web-backup");
    const source = (await jobStatus("web-backup")).sourceGUID!;
    await upload("note-1.txt", Buffer.from("edited"));
    await upload("added.txt", Buffer.from("new"));
    await app("DELETE", "/files/note-2.txt");
    contents.delete("note-2.txt");
    await apply({
      apiVersion: "offsite.dev/v1alpha1",
      kind: "BackupJob",
      metadata: { name: "web-compare", namespace: scene.ns },
      spec: {
        mode: "Compare",
        source: { podSelector: { matchLabels: { app: APP } }, path: `${APP_DATA}/files`, guid: source },
        target: { offsiteServer: { name: SERVER } },
        filters: { exclude: ["**/*.tmp"] },
        contentFirewall: { enabled: true },
        compare: { checksum: true },
      },
    });
    const { run, status } = await scene.waitRun("web-compare", undefined);
    assert.equal(run.result, "Succeeded", `${run.reason}: ${run.message}`);
    const result = status.compareResult!;
    assert.equal(result.matched, false);
    assert.deepEqual([result.added, result.changed, result.missing], [1, 1, 1], JSON.stringify(result));
    const kinds = Object.fromEntries((result.differences ?? []).map((d) => [d.path, d.kind]));
    assert.equal(kinds["added.txt"], "added");
    assert.equal(kinds["note-1.txt"], "changed");
    assert.equal(kinds["note-2.txt"], "missing");
  });

  it("restore of the first version makes the application serve the old content, byte for byte", async () => {
    const source = (await jobStatus("web-backup")).sourceGUID!;
    await apply({
      apiVersion: "offsite.dev/v1alpha1",
      kind: "BackupJob",
      metadata: { name: "web-restore", namespace: scene.ns },
      spec: {
        mode: "Restore",
        source: { podSelector: { matchLabels: { app: APP } }, path: `${APP_DATA}/files`, guid: source },
        target: { offsiteServer: { name: SERVER } },
        restore: { version: firstVersion, deleteExtraFiles: true },
        // The backup's filters: what they leave out was never backed up, so it stays.
        filters: { exclude: ["**/*.tmp"] },
        contentFirewall: { enabled: true },
      },
    });
    const { run } = await scene.waitRun("web-restore", undefined);
    assert.equal(run.result, "Succeeded", `${run.reason}: ${run.message}`);
    assert.equal((await app("GET", "/files/index.html")).toString(), "<h1>version one</h1>\n");
    for (const [name, data] of firstContents)
      assert.equal(sha256(await app("GET", `/files/${name}`)), sha256(data), `${name} as the app serves it`);
    const listed = (await app("GET", "/files")).toString().trim().split("\n");
    assert.ok(!listed.includes("added.txt"), "deleteExtraFiles removed what the version lacks");
    assert.ok(listed.includes("note-2.txt"), "the deleted file is back");
    for (const kept of ["cache.tmp", "shell.php", "run.sh"])
      assert.ok(listed.includes(kept), `${kept}, left out by the filters, is not deleted`);
    // No mover pod is left once the run is recorded.
    await eventually("the restore's mover pod gone", async () =>
      (await inSuite(["get", "pods", "-l", "offsite.dev/backupjob=web-restore", "-o", "name"])).trim() === ""
        ? true
        : undefined,
    );
  });

  it("backs up a claim without a sidecar through a mover pod that is gone afterwards", async () => {
    await apply({
      apiVersion: "v1",
      kind: "PersistentVolumeClaim",
      metadata: { name: "dumps", namespace: scene.ns },
      spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "1Gi" } } },
    });
    await apply({
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: "dump-writer", namespace: scene.ns },
      spec: {
        restartPolicy: "Never",
        containers: [
          {
            name: "writer",
            image: scene.cluster.images!.agent.ref,
            imagePullPolicy: "Never",
            command: [
              "/nodejs/bin/node",
              "-e",
              "require('node:fs').writeFileSync('/dumps/shop.sql', 'INSERT 1;\\n'.repeat(1000))",
            ],
            volumeMounts: [{ name: "dumps", mountPath: "/dumps" }],
          },
        ],
        volumes: [{ name: "dumps", persistentVolumeClaim: { claimName: "dumps" } }],
      },
    });
    await eventually("the dump written", async () =>
      (await inSuite(["get", "pod", "dump-writer", "-o", "jsonpath={.status.phase}"])).trim() === "Succeeded"
        ? true
        : undefined,
    );
    await apply({
      apiVersion: "offsite.dev/v1alpha1",
      kind: "BackupJob",
      metadata: { name: "dumps-backup", namespace: scene.ns },
      spec: {
        source: { persistentVolumeClaim: { claimName: "dumps" } },
        target: { offsiteServer: { name: SERVER } },
      },
    });
    const { run, status } = await scene.waitRun("dumps-backup", undefined);
    assert.equal(run.result, "Succeeded", `${run.reason}: ${run.message}`);
    const tree = await scene.versionTree(status, run.version!);
    assert.equal(readFileSync(join(tree, "shop.sql"), "utf8"), "INSERT 1;\n".repeat(1000));
    await eventually("the mover pod gone", async () =>
      (await inSuite(["get", "pods", "-l", "offsite.dev/backupjob=dumps-backup", "-o", "name"])).trim() === ""
        ? true
        : undefined,
    );
  });

  it("says what is wrong, with Ready=False and a reason: a missing server, no pods, pods without the agent", async () => {
    const job = (name: string, source: object, server = SERVER) =>
      apply({
        apiVersion: "offsite.dev/v1alpha1",
        kind: "BackupJob",
        metadata: { name, namespace: scene.ns },
        spec: { source, target: { offsiteServer: { name: server } }, schedule: "0 3 * * *" },
      });
    await job("no-server", { podSelector: { matchLabels: { app: APP } } }, "nowhere");
    await job("no-pods", { podSelector: { matchLabels: { app: "nothing-here" } } });
    // A pod the selector matches, without the opt-in label: no sidecar.
    await apply({
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: "plain", namespace: scene.ns, labels: { app: "plain" } },
      spec: {
        containers: [idleContainer("sleeper", scene.cluster.images!.agent.ref)],
      },
    });
    await job("no-agent", { podSelector: { matchLabels: { app: "plain" } } });
    const expect = async (name: string, reason: string, text: RegExp) => {
      const ready = await eventually(`BackupJob ${name} Ready=False ${reason}`, async () => {
        const c = condition(await jobStatus(name), "Ready");
        return c?.status === "False" && c.reason === reason ? c : undefined;
      });
      assert.match(ready.message ?? "", text);
    };
    await expect("no-server", "TargetNotFound", /OffsiteServer .*nowhere does not exist/);
    await expect("no-pods", "NoSourcePods", /app=nothing-here/);
    await expect("no-agent", "AgentMissing", /plain \(no offsite.dev\/inject=true label/);
  });
});
