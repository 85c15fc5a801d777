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
import { createHash, randomBytes } from "node:crypto";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  realNodeUnavailable,
  startTestCluster,
  usingExistingCluster,
  type TestCluster,
} from "../cluster/testCluster.ts";
import { eventually } from "./fixtures/polling.ts";
import { ROOT, installOperator, kubectlOk, withDiagnostics } from "./fixtures/operatorRelease.ts";

const RELEASE = "offsite";
const SERVER = "vault";
const APP = "web";
const MiB = 1024 * 1024;

interface RunSummary {
  id: string;
  result: string;
  trigger?: string;
  reason?: string;
  message?: string;
  version?: string;
  attempt?: number;
  filesChanged?: number;
  filesFiltered?: number;
  filesStopped?: number;
  bytesSent?: number;
  bytesChanged?: number;
}
interface Condition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
}
interface JobStatus {
  phase?: string;
  siteGUID?: string;
  sourceGUID?: string;
  lastManualTrigger?: string;
  lastRun?: RunSummary;
  lastSuccessfulRun?: RunSummary;
  history?: RunSummary[];
  conditions?: Condition[];
  compareResult?: {
    matched: boolean;
    added: number;
    changed: number;
    missing: number;
    differences?: { path: string; kind: string }[];
  };
}

const sha256 = (data: Buffer | string) => createHash("sha256").update(data).digest("hex");

const skip =
  realNodeUnavailable() ?? (usingExistingCluster() ? "reads the node's volumes from the host" : undefined);

describe("BackupJob on the real node: sidecar push agents, compare, restore, mover pods", { skip }, () => {
  let cluster: (TestCluster & { stop(): Promise<void> }) | undefined;
  let work = "";
  let ns = "";
  let appAddress = "";
  let firstVersion = "";
  const contents = new Map<string, Buffer>();

  const inSuite = (args: string[], input?: string) => kubectlOk(cluster!, ["-n", ns, ...args], input);
  const apply = (object: unknown) => inSuite(["apply", "-f", "-"], JSON.stringify(object));
  const jobStatus = async (name: string) =>
    (JSON.parse(await inSuite(["get", "backupjob", name, "-o", "json"])) as { status?: JobStatus }).status ??
    {};
  const condition = (status: JobStatus, type: string) => status.conditions?.find((c) => c.type === type);
  /** The host path of a claim's local volume. */
  const claimPath = async (claim: string) => {
    const volume = (await inSuite(["get", "pvc", claim, "-o", "jsonpath={.spec.volumeName}"])).trim();
    return (await kubectlOk(cluster!, ["get", "pv", volume, "-o", "jsonpath={.spec.local.path}"])).trim();
  };
  const versionTree = async (status: JobStatus, version: string) =>
    join(
      await claimPath(`${SERVER}-data`),
      status.siteGUID!,
      status.sourceGUID!,
      "versions",
      version,
      "tree",
    );

  /** The web app through its Service's ClusterIP (kube-proxy). */
  const app = async (method: string, path: string, body?: Buffer) => {
    const response = await fetch(`http://${appAddress}${path}`, { method, ...(body ? { body } : {}) });
    const data = Buffer.from(await response.arrayBuffer());
    if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${data.toString()}`);
    return data;
  };
  const upload = async (name: string, data: Buffer) => {
    await app("PUT", `/files/${name}`, data);
    contents.set(name, data);
  };

  /**
   * Waits for the newest run of `name` to end, when it is not `afterId` and (with `manual`)
   * is the run of that manual trigger; returns it.
   */
  const waitRun = (name: string, afterId: string | undefined, manual?: string, timeoutMs = 240_000) =>
    withDiagnostics(cluster!, ns, () =>
      eventually(
        `a finished run of BackupJob ${name}${manual ? ` for trigger ${manual}` : ""}`,
        async () => {
          const status = await jobStatus(name);
          const run = status.lastRun;
          if (!run || run.id === afterId || run.result === "Running") return undefined;
          if (manual && (status.lastManualTrigger !== manual || run.trigger !== "Manual")) return undefined;
          return { run, status };
        },
        timeoutMs,
        1000,
      ),
    );
  const suspend = async (name: string) => {
    await inSuite([
      "patch",
      "backupjob",
      name,
      "--type=merge",
      "-p",
      JSON.stringify({ spec: { suspend: true } }),
    ]);
    await eventually(
      `BackupJob ${name} idle`,
      async () => ((await jobStatus(name)).lastRun?.result !== "Running" ? true : undefined),
      240_000,
      1000,
    );
  };
  const trigger = (name: string, value: string) =>
    inSuite([
      "patch",
      "backupjob",
      name,
      "--type=merge",
      "-p",
      JSON.stringify({ spec: { manualTrigger: value } }),
    ]);

  before(async () => {
    cluster = await startTestCluster({ node: "real", crds: false, realNode: { volumes: 4 } });
    ns = cluster.namespace;
    work = mkdtempSync(join(tmpdir(), "offsite-e2e-backupjob-"));
    const installed = await installOperator(cluster, RELEASE, `${ns}-system`);
    assert.equal(installed.code, 0, installed.stderr);
    await inSuite(["apply", "-f", join(ROOT, "crds", "examples", "offsiteserver.yaml")]);
    await withDiagnostics(cluster, ns, () =>
      eventually(
        "OffsiteServer Ready",
        async () => {
          const server = JSON.parse(await inSuite(["get", "offsiteserver", SERVER, "-o", "json"])) as {
            status?: { conditions?: Condition[] };
          };
          return server.status?.conditions?.find((c) => c.type === "Ready")?.status === "True"
            ? true
            : undefined;
        },
        180_000,
      ),
    );
  });

  after(async () => {
    await cluster?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it("injects the agent sidecar into the opted-in pods of a BackupJob's selector; the Deployment stays as written", async () => {
    await apply({
      apiVersion: "offsite.dev/v1alpha1",
      kind: "BackupJob",
      metadata: { name: "web-backup", namespace: ns },
      spec: {
        source: { podSelector: { matchLabels: { app: APP } }, path: "/srv/www/files" },
        target: { offsiteServer: { name: SERVER } },
        schedule: "*/1 * * * *",
        manualTrigger: "first",
        filters: { exclude: ["**/*.tmp"] },
        contentFirewall: { enabled: true },
      },
    });
    await apply({
      apiVersion: "v1",
      kind: "PersistentVolumeClaim",
      metadata: { name: `${APP}-data`, namespace: ns },
      spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "1Gi" } } },
    });
    const template = {
      metadata: { labels: { app: APP, "offsite.dev/inject": "true" } },
      spec: {
        containers: [
          {
            name: "web",
            image: cluster!.images!.webApp.ref,
            imagePullPolicy: "Never",
            env: [
              { name: "DATA_DIR", value: "/srv/www" },
              { name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
            ],
            ports: [{ name: "http", containerPort: 8080 }],
            readinessProbe: { httpGet: { path: "/healthz", port: "http" }, periodSeconds: 2 },
            volumeMounts: [{ name: "data", mountPath: "/srv/www" }],
          },
        ],
        volumes: [{ name: "data", persistentVolumeClaim: { claimName: `${APP}-data` } }],
      },
    };
    await apply({
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: APP, namespace: ns },
      spec: {
        replicas: 1,
        strategy: { type: "Recreate" },
        selector: { matchLabels: { app: APP } },
        template,
      },
    });
    await apply({
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: APP, namespace: ns },
      spec: { selector: { app: APP }, ports: [{ port: 80, targetPort: "http" }] },
    });
    await withDiagnostics(cluster!, ns, () =>
      inSuite(["rollout", "status", `deployment/${APP}`, "--timeout=180s"]),
    );
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
    const dataMount = sidecars[0]!.volumeMounts!.find((m) => m.mountPath === "/srv/www");
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
    appAddress = `${(await inSuite(["get", "service", APP, "-o", "jsonpath={.spec.clusterIP}"])).trim()}:80`;
  });

  it("backs the application's files up from the sidecar to the OffsiteServer's volume, filters and firewall applied on the agent", async () => {
    await upload("index.html", Buffer.from("<h1>version one</h1>\n"));
    await upload("photo.bin", randomBytes(8 * MiB));
    for (let i = 0; i < 20; i++) await upload(`note-${i}.txt`, randomBytes(2000 + i));
    await app("PUT", "/files/cache.tmp", Buffer.from("scratch"));
    await app("PUT", "/files/shell.php", Buffer.from("<?php system($_GET['c']); ?>\n"));
    await app("PUT", "/files/run.sh", Buffer.from("#!/bin/sh\nrm -rf /\n"));
    // The first run may have started before the uploads (the job exists before its pod):
    // trigger one that surely sees them.
    const before = (await jobStatus("web-backup")).lastRun?.id;
    await trigger("web-backup", "uploads-done");
    const { run, status } = await waitRun("web-backup", before, "uploads-done");
    assert.equal(run.result, "Succeeded", `${run.reason}: ${run.message}`);
    assert.ok(run.version, "the run names its version");
    firstVersion = run.version!;
    assert.ok((run.filesFiltered ?? 0) >= 1, "cache.tmp counted as filtered");
    assert.ok((run.filesStopped ?? 0) >= 2, "shell.php and run.sh counted as stopped");
    assert.ok(status.siteGUID && status.sourceGUID, "GUIDs in status");
    const kubeSystem = JSON.parse(
      await kubectlOk(cluster!, ["get", "namespace", "kube-system", "-o", "json"]),
    ) as {
      metadata: { uid: string };
    };
    const job = JSON.parse(await inSuite(["get", "backupjob", "web-backup", "-o", "json"])) as {
      metadata: { uid: string };
    };
    assert.equal(status.siteGUID, kubeSystem.metadata.uid, "the site GUID defaults to kube-system's UID");
    assert.equal(status.sourceGUID, job.metadata.uid, "the source GUID defaults to the job's UID");
    const tree = await versionTree(status, firstVersion);
    for (const [name, data] of contents)
      assert.equal(sha256(readFileSync(join(tree, name))), sha256(data), name);
    for (const kept of ["cache.tmp", "shell.php", "run.sh"])
      assert.throws(() => readFileSync(join(tree, kept)), /ENOENT/, `${kept} never reached the receiver`);
    assert.equal(condition(status, "Ready")?.status, "True", condition(status, "Ready")?.message);
  });

  it("the next run sends only what changed: a small file, and a few bytes inside a large one", async () => {
    await upload("index.html", Buffer.from("<h1>version two</h1>\n"));
    // An edit in place in the middle of the large file, on the node's volume.
    const photo = join(await claimPath(`${APP}-data`), "files", "photo.bin");
    const fd = openSync(photo, "r+");
    writeSync(fd, Buffer.from("edited in place"), 0, 15, 4 * MiB);
    closeSync(fd);
    contents.set("photo.bin", readFileSync(photo));
    const before = (await jobStatus("web-backup")).lastRun?.id;
    await trigger("web-backup", "second");
    const { run, status } = await waitRun("web-backup", before, "second");
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
    const tree = await versionTree(status, run.version!);
    assert.equal(sha256(readFileSync(join(tree, "photo.bin"))), sha256(contents.get("photo.bin")!));
    assert.equal(readFileSync(join(tree, "index.html"), "utf8"), "<h1>version two</h1>\n");
    // The first version is intact.
    assert.equal(
      readFileSync(join(await versionTree(status, firstVersion), "index.html"), "utf8"),
      "<h1>version one</h1>\n",
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
    await suspend("web-backup");
    const source = (await jobStatus("web-backup")).sourceGUID!;
    await upload("note-1.txt", Buffer.from("edited"));
    await upload("added.txt", Buffer.from("new"));
    await app("DELETE", "/files/note-2.txt");
    contents.delete("note-2.txt");
    await apply({
      apiVersion: "offsite.dev/v1alpha1",
      kind: "BackupJob",
      metadata: { name: "web-compare", namespace: ns },
      spec: {
        mode: "Compare",
        source: { podSelector: { matchLabels: { app: APP } }, path: "/srv/www/files", guid: source },
        target: { offsiteServer: { name: SERVER } },
        filters: { exclude: ["**/*.tmp"] },
        contentFirewall: { enabled: true },
        compare: { checksum: true },
      },
    });
    const { run, status } = await waitRun("web-compare", undefined);
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
      metadata: { name: "web-restore", namespace: ns },
      spec: {
        mode: "Restore",
        source: { podSelector: { matchLabels: { app: APP } }, path: "/srv/www/files", guid: source },
        target: { offsiteServer: { name: SERVER } },
        restore: { version: firstVersion, deleteExtraFiles: true },
      },
    });
    const { run } = await waitRun("web-restore", undefined);
    assert.equal(run.result, "Succeeded", `${run.reason}: ${run.message}`);
    assert.equal((await app("GET", "/files/index.html")).toString(), "<h1>version one</h1>\n");
    const listed = (await app("GET", "/files")).toString().trim().split("\n");
    assert.ok(!listed.includes("added.txt"), "deleteExtraFiles removed what the version lacks");
    assert.ok(listed.includes("note-2.txt"), "the deleted file is back");
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
      metadata: { name: "dumps", namespace: ns },
      spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "1Gi" } } },
    });
    await apply({
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: "dump-writer", namespace: ns },
      spec: {
        restartPolicy: "Never",
        containers: [
          {
            name: "writer",
            image: cluster!.images!.agent.ref,
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
      metadata: { name: "dumps-backup", namespace: ns },
      spec: {
        source: { persistentVolumeClaim: { claimName: "dumps" } },
        target: { offsiteServer: { name: SERVER } },
      },
    });
    const { run, status } = await waitRun("dumps-backup", undefined);
    assert.equal(run.result, "Succeeded", `${run.reason}: ${run.message}`);
    const tree = await versionTree(status, run.version!);
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
        metadata: { name, namespace: ns },
        spec: { source, target: { offsiteServer: { name: server } }, schedule: "0 3 * * *" },
      });
    await job("no-server", { podSelector: { matchLabels: { app: APP } } }, "nowhere");
    await job("no-pods", { podSelector: { matchLabels: { app: "nothing-here" } } });
    // A pod the selector matches, without the opt-in label: no sidecar.
    await apply({
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: "plain", namespace: ns, labels: { app: "plain" } },
      spec: {
        containers: [
          {
            name: "sleeper",
            image: cluster!.images!.agent.ref,
            imagePullPolicy: "Never",
            command: ["/nodejs/bin/node", "-e", "setInterval(() => {}, 1 << 30)"],
          },
        ],
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
