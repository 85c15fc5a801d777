/**
 * BackupJob when things go wrong, on the real node: the receiver pod killed mid-run (the
 * run retries with back-off and resumes), the application pod deleted mid-run (the attempt
 * fails with a reason, the run carries on on the new pod), the operator restarted
 * mid-run (one run, one version: the new leader re-attaches by job id), the webhook down
 * (pods start without the agent; AgentMissing until they are re-created), and hostile or
 * wrong credentials (a job request to the sidecar from anything but the operator, a
 * foreign or expired client certificate). Earlier versions stay intact throughout, and
 * nothing is written outside the source's own directory.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { execFileSync, spawnSync } from "node:child_process";
import {
  chmodSync,
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { connect } from "node:tls";
import { join } from "node:path";
import { createCertificateAuthority, issueCertificate } from "../../pki/certificates.ts";
import { realNodeUnavailable, usingExistingCluster } from "../cluster/testCluster.ts";
import {
  APP,
  APP_DATA,
  BackupScene,
  RELEASE,
  SERVER,
  condition,
  type JobStatus,
} from "./fixtures/backupScene.ts";
import { kubectlOk } from "./fixtures/operatorRelease.ts";
import { eventually, sleep } from "./fixtures/polling.ts";

const MiB = 1024 * 1024;
const BIG = 384 * MiB;
const JOB = "web-backup";
const sha256 = (data: Buffer) => createHash("sha256").update(data).digest("hex");

const skip =
  realNodeUnavailable() ??
  (usingExistingCluster() ? "kills pods' processes and reads the node's volumes" : undefined);

describe("BackupJob on the real node when things fail", { skip }, () => {
  let scene: BackupScene;
  let work = "";
  let bigFile = "";
  const versionsSeen = new Map<string, string>(); // version -> sha256 of big.bin in it
  const progressSeen: NonNullable<JobStatus["progress"]>[] = [];
  let seedDone = false;
  let tinyMount = "";

  const versions = async (status: JobStatus) =>
    readdirSync(join(await scene.sourceDir(status), "versions")).sort();
  /** Rewrites 1 MiB in the middle of the big file, so each run has something to send. */
  const touchBigFile = () => {
    const fd = openSync(bigFile, "r+");
    writeSync(fd, randomBytes(MiB), 0, MiB, BIG / 2);
    closeSync(fd);
  };
  /** Every version seen so far still holds the big file it was made with. */
  const assertVersionsIntact = async (status: JobStatus) => {
    for (const [version, hash] of versionsSeen)
      assert.equal(
        sha256(readFileSync(join(await scene.versionTree(status, version), "big.bin"))),
        hash,
        version,
      );
  };
  const remember = async (status: JobStatus, version: string) =>
    versionsSeen.set(
      version,
      sha256(readFileSync(join(await scene.versionTree(status, version), "big.bin"))),
    );

  before(async () => {
    work = mkdtempSync(join(tmpdir(), "offsite-e2e-failures-"));
    scene = await BackupScene.start();
    await scene.apply({
      apiVersion: "offsite.dev/v1alpha1",
      kind: "BackupJob",
      metadata: { name: JOB, namespace: scene.ns },
      spec: {
        source: { podSelector: { matchLabels: { app: APP } }, path: `${APP_DATA}/files` },
        target: { offsiteServer: { name: SERVER } },
        schedule: "0 3 * * *",
        backoffLimit: 4,
      },
    });
    await scene.startWebApp(scene.cluster.images!.webApp.ref);
    await scene.app("PUT", "/files/index.html", Buffer.from("hello\n"));
    // A file large enough that a run takes seconds, written on the node's volume.
    bigFile = join(await scene.claimPath(`${APP}-data`), "files", "big.bin");
    const fd = openSync(bigFile, "w");
    for (let at = 0; at < BIG; at += 16 * MiB) writeSync(fd, randomBytes(16 * MiB));
    closeSync(fd);
    await scene.trigger(JOB, "seed");
    // While the seed run sends the big file, its progress reaches status.
    const watching = (async () => {
      while (!seedDone) {
        const seen: JobStatus = await scene.jobStatus(JOB).catch((): JobStatus => ({}));
        const progress = seen.progress;
        if (progress?.bytesDone) progressSeen.push(progress);
        await sleep(500);
      }
    })();
    const { run, status } = await scene
      .waitRun(JOB, undefined, "seed", 300_000)
      .finally(() => (seedDone = true));
    await watching;
    assert.equal(run.result, "Succeeded", `${run.reason}: ${run.message}`);
    await remember(status, run.version!);
  });

  after(async () => {
    await scene?.stop();
    if (tinyMount) spawnSync("umount", ["-l", tinyMount]);
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it("reports a run's progress in status while it runs: phase, files and bytes of the total, rate, ETA", () => {
    assert.ok(progressSeen.length > 0, "progress was seen in status during a 384 MiB run");
    const last = progressSeen.at(-1)!;
    assert.ok(["Sending", "Committing"].includes(last.phase ?? ""), JSON.stringify(last));
    assert.ok(last.bytesTotal! >= BIG && last.bytesDone! <= last.bytesTotal!, JSON.stringify(last));
    assert.ok(last.filesTotal! >= 2, JSON.stringify(last));
    assert.ok(
      progressSeen.some((p) => (p.bytesPerSecond ?? 0) > 0 && p.etaSeconds !== undefined),
      JSON.stringify(progressSeen),
    );
    // Written at a bounded rate: no two updates less than 5 s apart.
    const times = [...new Set(progressSeen.map((p) => p.updatedAt!))].map(Date.parse).sort();
    for (let i = 1; i < times.length; i++)
      assert.ok(times[i]! - times[i - 1]! >= 5000, JSON.stringify(times));
  });

  it("the receiver pod killed mid-run: the run retries with back-off and resumes; earlier versions intact", async () => {
    // A new big file: the whole of it must travel, which takes long enough to interrupt.
    const fd = openSync(bigFile, "w");
    for (let at = 0; at < BIG; at += 16 * MiB) writeSync(fd, randomBytes(16 * MiB));
    closeSync(fd);
    await scene.trigger(JOB, "receiver-killed");
    await scene.waitRunning(JOB, "receiver-killed");
    // Mid-run: the receiver has staged part of the file. Waited for, not timed: protocol
    // version 3 sends the 384 MiB in about two seconds here, and a fixed 2.5 s missed it.
    const staged = join(await scene.sourceDir(await scene.jobStatus(JOB)), "staging", "partial", "data");
    await eventually(
      "the receiver staged 16 MiB of big.bin",
      async () => (existsSync(staged) && statSync(staged).size >= 16 * MiB) || undefined,
      60_000,
      20,
    );
    await scene.inSuite(["delete", "pod", `${SERVER}-0`, "--grace-period=0", "--force"]);
    const { run, status } = await scene.waitRun(JOB, undefined, "receiver-killed", 360_000);
    assert.equal(run.result, "Succeeded", `${run.reason}: ${run.message}`);
    assert.ok((run.attempt ?? 1) >= 2, `retried: attempt ${run.attempt}`);
    assert.equal(run.resumed, true, "the retry resumed the interrupted session");
    assert.ok(run.bytesSent! < BIG, `the retry sent ${run.bytesSent} of ${BIG} bytes`);
    const events = await scene.events(JOB);
    assert.ok(
      events.some(
        (e) => e.reason === "AttemptFailed" && /ReceiverUnreachable|connection|receiver/i.test(e.message),
      ),
      JSON.stringify(events.map((e) => `${e.reason}: ${e.message}`)),
    );
    await remember(status, run.version!);
    await assertVersionsIntact(status);
  });

  it("the application pod deleted mid-run: that attempt fails saying so, the next one runs on the new pod", async () => {
    touchBigFile();
    const [before] = await scene.appPods();
    await scene.trigger(JOB, "app-deleted");
    const running = await scene.waitRunning(JOB, "app-deleted");
    assert.equal(running.agent, before!.metadata.name);
    await sleep(1500);
    await scene.inSuite(["delete", "pod", before!.metadata.name, "--wait=false"]);
    const { run, status } = await scene.waitRun(JOB, undefined, "app-deleted", 360_000);
    assert.equal(run.result, "Succeeded", `${run.reason}: ${run.message}`);
    const events = await scene.events(JOB);
    assert.ok(
      events.some((e) => e.reason === "AttemptFailed" && /AgentGone|was deleted|stopped/i.test(e.message)),
      JSON.stringify(events.map((e) => `${e.reason}: ${e.message}`)),
    );
    const [after] = await scene.appPods();
    assert.notEqual(after!.metadata.name, before!.metadata.name);
    assert.ok(
      (after!.spec.initContainers ?? []).some((c) => c.name === "offsite-agent"),
      "the new pod has the agent",
    );
    await remember(status, run.version!);
    await assertVersionsIntact(status);
  });

  it("the operator restarted mid-run: the new one re-attaches by job id — one run, one version", async () => {
    touchBigFile();
    const before = await versions(await scene.jobStatus(JOB));
    await scene.trigger(JOB, "operator-restarted");
    const running = await scene.waitRunning(JOB, "operator-restarted");
    await scene.cluster.kubectl([
      "-n",
      scene.operatorNamespace,
      "delete",
      "pod",
      "-l",
      `app.kubernetes.io/instance=${RELEASE}`,
      "--wait=false",
    ]);
    const { run, status } = await scene.waitRun(JOB, undefined, "operator-restarted", 360_000);
    assert.equal(run.result, "Succeeded", `${run.reason}: ${run.message}`);
    assert.equal(run.id, running.id, "the same run");
    assert.equal(run.attempt, running.attempt, "no second attempt");
    const added = (await versions(status)).filter((v) => !before.includes(v));
    assert.deepEqual(added, [run.version], "exactly one new version");
    await remember(status, run.version!);
    await assertVersionsIntact(status);
  });

  it("with the webhook down, pods still start (without the agent); the job says AgentMissing until they are re-created", async () => {
    const operator = ["-n", scene.operatorNamespace];
    await scene.cluster.kubectl([...operator, "scale", "deployment", RELEASE, "--replicas=0"]);
    await eventually("the operator gone", async () =>
      (
        await scene.cluster.kubectl([
          ...operator,
          "get",
          "pods",
          "-l",
          `app.kubernetes.io/instance=${RELEASE}`,
          "-o",
          "name",
        ])
      ).stdout.trim() === ""
        ? true
        : undefined,
    );
    let bare: Awaited<ReturnType<typeof scene.appPods>>[number] | undefined;
    try {
      const [old] = await scene.appPods();
      await scene.inSuite(["delete", "pod", old!.metadata.name]);
      await scene.diagnosed(() =>
        scene.inSuite(["rollout", "status", `deployment/${APP}`, "--timeout=180s"]),
      );
      [bare] = await scene.appPods();
      assert.ok(
        !(bare!.spec.initContainers ?? []).some((c) => c.name === "offsite-agent"),
        "started without the agent",
      );
      // Through the Service, once kube-proxy routes to the new pod.
      const served = await eventually("the app serving through its Service", () =>
        scene.app("GET", "/files/index.html"),
      );
      assert.equal(served.toString(), "hello\n", "the application serves");
    } finally {
      // Whatever happened above, the later tests need the operator.
      await scene.cluster.kubectl([...operator, "scale", "deployment", RELEASE, "--replicas=1"]);
    }
    const missing = await eventually(
      "Ready=False AgentMissing",
      async () => {
        const c = condition(await scene.jobStatus(JOB), "Ready");
        return c?.status === "False" && c.reason === "AgentMissing" ? c : undefined;
      },
      180_000,
      1000,
    );
    assert.match(
      missing.message ?? "",
      new RegExp(`${bare!.metadata.name} \\(created while the operator's webhook was unavailable`),
    );
    // Pods created before the webhook's Service has a ready endpoint again still miss the agent.
    await scene.cluster.kubectl([
      ...operator,
      "rollout",
      "status",
      `deployment/${RELEASE}`,
      "--timeout=180s",
    ]);
    await eventually("the webhook Service routes to the operator", async () => {
      const slices = await scene.cluster.kubectl([
        ...operator,
        "get",
        "endpointslices",
        "-l",
        `kubernetes.io/service-name=${RELEASE}-webhook`,
        "-o",
        "jsonpath={.items[*].endpoints[*].conditions.ready}",
      ]);
      return slices.stdout.includes("true") ? true : undefined;
    });
    await sleep(2000); // kube-proxy programs the route from the slice
    await scene.inSuite(["rollout", "restart", `deployment/${APP}`]);
    await scene.diagnosed(() => scene.inSuite(["rollout", "status", `deployment/${APP}`, "--timeout=180s"]));
    await eventually(
      "Ready=True with the agent back",
      async () => (condition(await scene.jobStatus(JOB), "Ready")?.status === "True" ? true : undefined),
      120_000,
      1000,
    );
  });

  it("the sidecar takes job requests only from the operator's certificate", async () => {
    const pod = JSON.parse(await scene.inSuite(["get", "pods", "-l", `app=${APP}`, "-o", "json"])) as {
      items: { status: { podIP: string } }[];
    };
    const ip = pod.items[0]!.status.podIP;
    const source = JSON.parse(
      await scene.inSuite(["get", "secret", `${JOB}-offsite-source`, "-o", "json"]),
    ) as {
      data: Record<string, string>;
    };
    const decoded = (key: string) => Buffer.from(source.data[key]!, "base64").toString();
    /** A TLS handshake with the agent's control port and one request: what the agent answers, or how it refused. */
    const tryRequest = (options: { cert?: string; key?: string }) =>
      new Promise<string>((resolve) => {
        const socket = connect({ host: ip, port: 5723, rejectUnauthorized: false, ...options }, () => {
          socket.write(
            `POST /v1/jobs HTTP/1.1\r\nhost: agent\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}`,
          );
        });
        let answer = "";
        socket.on("data", (chunk: Buffer) => (answer += chunk.toString()));
        socket.on("error", (error: Error) => resolve(`refused: ${error.message}`));
        socket.on("close", () => resolve(answer || "refused: closed"));
        socket.setTimeout(10_000, () => socket.destroy());
      });
    assert.match(await tryRequest({}), /^refused/, "no client certificate");
    assert.match(
      await tryRequest({ cert: decoded("tls.crt"), key: decoded("tls.key") }),
      /^refused/,
      "the job's own source certificate (the target's CA) is not the operator",
    );
    const stranger = await createCertificateAuthority("stranger", 3600_000);
    const posing = await issueCertificate(stranger, {
      commonName: "offsite-operator",
      organizations: ["offsite-operator"],
      usage: "client",
      validForMs: 3600_000,
    });
    assert.match(
      await tryRequest({ cert: posing.certificatePem, key: posing.privateKeyPem }),
      /^refused/,
      "the operator's name from another CA",
    );
  });

  it("a foreign or an expired client certificate fails the run with CertificateInvalid and says what to do", async () => {
    const serverCa = JSON.parse(await scene.inSuite(["get", "secret", `${SERVER}-ca`, "-o", "json"])) as {
      data: Record<string, string>;
    };
    const ca = {
      certificatePem: Buffer.from(serverCa.data["tls.crt"]!, "base64").toString(),
      privateKeyPem: Buffer.from(serverCa.data["tls.key"]!, "base64").toString(),
    };
    const status = await scene.jobStatus(JOB);
    const foreignCa = await createCertificateAuthority("somebody else", 3600_000);
    const cases = {
      foreign: await issueCertificate(foreignCa, {
        commonName: status.sourceGUID!,
        organizations: [status.siteGUID!],
        usage: "client",
        validForMs: 3600_000,
      }),
      // Issued by the right CA, valid for a millisecond (its notBefore is backdated).
      expired: await issueCertificate(ca, {
        commonName: status.sourceGUID!,
        organizations: [status.siteGUID!],
        usage: "client",
        validForMs: 1,
      }),
    };
    for (const [kind, certificate] of Object.entries(cases)) {
      const name = `external-${kind}`;
      await scene.apply({
        apiVersion: "v1",
        kind: "Secret",
        metadata: { name: `${name}-cert`, namespace: scene.ns },
        type: "kubernetes.io/tls",
        stringData: {
          "tls.crt": certificate.certificatePem,
          "tls.key": certificate.privateKeyPem,
          "ca.crt": ca.certificatePem,
        },
      });
      await scene.apply({
        apiVersion: "offsite.dev/v1alpha1",
        kind: "BackupJob",
        metadata: { name, namespace: scene.ns },
        spec: {
          source: {
            podSelector: { matchLabels: { app: APP } },
            path: `${APP_DATA}/files`,
            guid: status.sourceGUID,
          },
          siteGUID: status.siteGUID,
          target: { external: { endpoint: `${SERVER}.${scene.ns}.svc:5722`, tlsSecretName: `${name}-cert` } },
          backoffLimit: 0,
        },
      });
      const { run } = await scene.waitRun(name, undefined);
      assert.equal(run.result, "Failed", `${kind}: ${JSON.stringify(run)}`);
      assert.equal(run.reason, "CertificateInvalid", `${kind}: ${run.message}`);
      assert.match(run.message ?? "", /certificate/i);
    }
  });

  it("a full receiver volume fails the run with DiskFull and a message a person can act on", async () => {
    // A 64 MiB file system of its own for a second OffsiteServer: the 384 MiB file cannot fit.
    const image = join(work, "tiny.img");
    tinyMount = join(work, "tiny");
    mkdirSync(tinyMount);
    execFileSync("truncate", ["-s", "64M", image]);
    execFileSync("mkfs.ext4", ["-q", "-F", image]);
    execFileSync("mount", ["-o", "loop", image, tinyMount]);
    chmodSync(tinyMount, 0o777);
    const node = (
      await scene.cluster.kubectl(["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"])
    ).stdout.trim();
    await scene.apply({
      apiVersion: "v1",
      kind: "PersistentVolume",
      metadata: { name: `${scene.ns}-tiny` },
      spec: {
        capacity: { storage: "64Mi" },
        accessModes: ["ReadWriteOnce"],
        persistentVolumeReclaimPolicy: "Retain",
        storageClassName: "offsite-tiny",
        local: { path: tinyMount },
        nodeAffinity: {
          required: {
            nodeSelectorTerms: [
              { matchExpressions: [{ key: "kubernetes.io/hostname", operator: "In", values: [node] }] },
            ],
          },
        },
      },
    });
    await scene.apply({
      apiVersion: "offsite.dev/v1alpha1",
      kind: "OffsiteServer",
      metadata: { name: "tiny", namespace: scene.ns },
      spec: { storage: { size: "64Mi", storageClassName: "offsite-tiny" } },
    });
    await scene.diagnosed(() =>
      eventually(
        "OffsiteServer tiny Ready",
        async () => {
          const server = JSON.parse(await scene.inSuite(["get", "offsiteserver", "tiny", "-o", "json"])) as {
            status?: { conditions?: { type: string; status: string }[] };
          };
          return server.status?.conditions?.find((c) => c.type === "Ready")?.status === "True"
            ? true
            : undefined;
        },
        180_000,
      ),
    );
    await scene.apply({
      apiVersion: "offsite.dev/v1alpha1",
      kind: "BackupJob",
      metadata: { name: "to-tiny", namespace: scene.ns },
      spec: {
        source: { podSelector: { matchLabels: { app: APP } }, path: `${APP_DATA}/files` },
        target: { offsiteServer: { name: "tiny" } },
        backoffLimit: 0,
      },
    });
    const { run } = await scene.waitRun("to-tiny", undefined, undefined, 300_000);
    assert.equal(run.result, "Failed", JSON.stringify(run));
    assert.equal(run.reason, "DiskFull", run.message);
    assert.match(run.message ?? "", /space|full/i);
    const ready = condition(await scene.jobStatus("to-tiny"), "Degraded");
    assert.equal(ready?.reason, "DiskFull");
  });

  it("exports offsite_backup_* metrics: runs by result, bytes, the last success", async () => {
    // Counters are the running operator's (it was restarted above): one run of its own.
    touchBigFile();
    await scene.trigger(JOB, "metrics");
    const { run } = await scene.waitRun(JOB, undefined, "metrics", 300_000);
    assert.equal(run.result, "Succeeded", `${run.reason}: ${run.message}`);
    const pods = JSON.parse(
      await kubectlOk(scene.cluster, [
        "-n",
        scene.operatorNamespace,
        "get",
        "pods",
        "-l",
        `app.kubernetes.io/instance=${RELEASE}`,
        "-o",
        "json",
      ]),
    ) as { items: { status: { podIP: string } }[] };
    const text = await (await fetch(`http://${pods.items[0]!.status.podIP}:8080/metrics`)).text();
    /** The value of the series `name` whose labels include every pair of `labels` (any order). */
    const sample = (name: string, labels: Record<string, string>) => {
      const line = text
        .split("\n")
        .find(
          (l) =>
            l.startsWith(`${name}{`) && Object.entries(labels).every(([k, v]) => l.includes(`${k}="${v}"`)),
        );
      return line ? Number(line.slice(line.lastIndexOf(" ") + 1)) : NaN;
    };
    const job = { namespace: scene.ns, name: JOB };
    assert.ok(
      sample("offsite_backup_runs_total", { ...job, mode: "Backup", result: "succeeded" }) >= 1,
      text,
    );
    assert.ok(
      sample("offsite_backup_runs_total", { ...job, name: "to-tiny", mode: "Backup", result: "failed" }) >= 1,
    );
    assert.ok(sample("offsite_backup_bytes_sent_total", job) > 0);
    assert.ok(sample("offsite_backup_last_success_timestamp_seconds", job) > Date.now() / 1000 - 3600);
    assert.equal(sample("offsite_backup_ready", job), 1);
  });

  it("nothing is written outside the source's own directory on the server's volume", async () => {
    const status = await scene.jobStatus(JOB);
    const root = await scene.claimPath(`${SERVER}-data`);
    const sites = readdirSync(root).filter((name) => !name.startsWith("."));
    assert.deepEqual(sites, [status.siteGUID], `top level of the store: ${sites.join(", ")}`);
    assert.deepEqual(readdirSync(join(root, status.siteGUID!)), [status.sourceGUID]);
    await assertVersionsIntact(status);
  });
});
