import { describe, it } from "node:test";
import assert from "node:assert/strict";
import type { V1Container, V1Pod, V1Volume } from "@kubernetes/client-node";
import { INJECT_LABEL, INJECT_LABEL_VALUE, SIDECAR_CONTAINER } from "../agentControl/names.ts";
import { claimBehind, classifySourcePods, selectorQuery } from "./sourcePods.ts";

describe("a podSelector as a query", () => {
  it("joins matchLabels and every matchExpressions operator", () => {
    assert.equal(
      selectorQuery({
        matchLabels: { app: "db", "app.kubernetes.io/part-of": "shop" },
        matchExpressions: [
          { key: "tier", operator: "In", values: ["primary", "replica"] },
          { key: "env", operator: "NotIn", values: ["test"] },
          { key: "offsite.dev/backup", operator: "Exists" },
          { key: "legacy", operator: "DoesNotExist", values: [] },
        ],
      }),
      "app=db,app.kubernetes.io/part-of=shop,tier in (primary,replica),env notin (test),offsite.dev/backup,!legacy",
    );
  });

  it("takes either part alone, and nothing for an empty selector", () => {
    assert.equal(selectorQuery({ matchLabels: { app: "db" } }), "app=db");
    assert.equal(
      selectorQuery({ matchExpressions: [{ key: "app", operator: "In", values: ["db"] }] }),
      "app in (db)",
    );
    assert.equal(selectorQuery({}), "");
  });
});

interface PodOptions {
  sidecar?: "running" | "waiting" | "unready" | "none" | "not-native";
  ip?: string;
  phase?: string;
  terminating?: boolean;
  labels?: Record<string, string>;
  nodeName?: string;
  containerName?: string;
}

function aPod(name: string, options: PodOptions = {}): V1Pod {
  const {
    sidecar = "running",
    ip = "10.0.0.7",
    phase = "Running",
    containerName = SIDECAR_CONTAINER,
  } = options;
  const initContainers: V1Container[] =
    sidecar === "none"
      ? []
      : [
          { name: "init-db", image: "busybox" },
          {
            name: containerName,
            image: "offsite",
            ...(sidecar === "not-native" ? {} : { restartPolicy: "Always" }),
          },
        ];
  return {
    metadata: {
      name,
      uid: `uid-${name}`,
      labels: { app: "db", ...options.labels },
      ...(options.terminating ? { deletionTimestamp: new Date("2026-12-02T03:00:00Z") } : {}),
    },
    spec: {
      ...(options.nodeName ? { nodeName: options.nodeName } : {}),
      initContainers,
      containers: [{ name: "db", image: "postgres" }],
    },
    status: {
      phase,
      ...(ip ? { podIP: ip } : {}),
      initContainerStatuses:
        sidecar === "none"
          ? []
          : [
              {
                name: containerName,
                image: "offsite",
                imageID: "",
                restartCount: 0,
                ready: sidecar === "running",
                state:
                  sidecar === "waiting"
                    ? { waiting: { reason: "ContainerCreating" } }
                    : { running: { startedAt: new Date("2026-12-02T02:00:00Z") } },
              },
            ],
    },
  };
}

describe("the source pods", () => {
  it("takes a pod with a running sidecar and a pod IP as an agent", () => {
    const pods = classifySourcePods([aPod("db-0", { nodeName: "node-a" })], SIDECAR_CONTAINER);
    assert.deepEqual(pods, {
      agents: [{ name: "db-0", uid: "uid-db-0", ip: "10.0.0.7", nodeName: "node-a" }],
      missing: [],
      starting: [],
      total: 1,
    });
    assert.deepEqual(classifySourcePods([aPod("db-0")], SIDECAR_CONTAINER).agents, [
      { name: "db-0", uid: "uid-db-0", ip: "10.0.0.7" },
    ]);
  });

  it("reports pods without the sidecar, with why by their inject label", () => {
    const pods = classifySourcePods(
      [
        aPod("db-1", { sidecar: "none", labels: { [INJECT_LABEL]: INJECT_LABEL_VALUE } }),
        aPod("db-0", { sidecar: "none" }),
        aPod("db-2", { sidecar: "none", labels: { [INJECT_LABEL]: "false" } }),
        // An ordinary init container of that name is no sidecar.
        aPod("db-3", { sidecar: "not-native", labels: { [INJECT_LABEL]: INJECT_LABEL_VALUE } }),
      ],
      SIDECAR_CONTAINER,
    );
    assert.deepEqual(pods.agents, []);
    assert.deepEqual(pods.starting, []);
    assert.equal(pods.total, 4);
    assert.deepEqual(
      pods.missing.map((p) => p.name),
      ["db-0", "db-1", "db-2", "db-3"],
    );
    const why = Object.fromEntries(pods.missing.map((p) => [p.name, p.why]));
    assert.match(why["db-0"]!, /no offsite\.dev\/inject=true label on its pod template/);
    assert.match(why["db-2"]!, /no offsite\.dev\/inject=true label/);
    assert.match(why["db-1"]!, /webhook was unavailable.*re-created/);
    assert.match(why["db-3"]!, /webhook was unavailable/);
  });

  it("waits for a sidecar that is not running, not ready or has no pod IP yet", () => {
    const pods = classifySourcePods(
      [
        aPod("db-2", { sidecar: "waiting" }),
        aPod("db-1", { sidecar: "unready" }),
        aPod("db-0", { ip: "", phase: "Pending" }),
      ],
      SIDECAR_CONTAINER,
    );
    assert.deepEqual(pods, { agents: [], missing: [], starting: ["db-0", "db-1", "db-2"], total: 3 });
  });

  it("ignores terminating and finished pods", () => {
    const pods = classifySourcePods(
      [
        aPod("db-0", { terminating: true }),
        aPod("db-1", { phase: "Succeeded" }),
        aPod("db-2", { phase: "Failed", sidecar: "none" }),
        aPod("db-3"),
      ],
      SIDECAR_CONTAINER,
    );
    assert.deepEqual(
      pods.agents.map((p) => p.name),
      ["db-3"],
    );
    assert.deepEqual(pods.missing, []);
    assert.equal(pods.total, 1);
    assert.deepEqual(classifySourcePods([], SIDECAR_CONTAINER), {
      agents: [],
      missing: [],
      starting: [],
      total: 0,
    });
  });

  it("sorts each list by pod name", () => {
    const pods = classifySourcePods(
      ["db-b", "db-c", "db-a"].flatMap((name) => [
        aPod(`${name}-agent`),
        aPod(`${name}-missing`, { sidecar: "none" }),
        aPod(`${name}-starting`, { sidecar: "waiting" }),
      ]),
      SIDECAR_CONTAINER,
    );
    assert.deepEqual(
      pods.agents.map((p) => p.name),
      ["db-a-agent", "db-b-agent", "db-c-agent"],
    );
    assert.deepEqual(
      pods.missing.map((p) => p.name),
      ["db-a-missing", "db-b-missing", "db-c-missing"],
    );
    assert.deepEqual(pods.starting, ["db-a-starting", "db-b-starting", "db-c-starting"]);
  });

  it("looks for the job's container name", () => {
    const pod = aPod("db-0", { containerName: "backup-agent" });
    assert.equal(classifySourcePods([pod], "backup-agent").agents.length, 1);
    assert.equal(classifySourcePods([pod], SIDECAR_CONTAINER).missing.length, 1);
  });
});

describe("the claim behind a path", () => {
  function podWith(
    mounts: { volume: string; at: string; subPath?: string; container?: string }[],
    volumes: V1Volume[],
    nodeName?: string,
  ): V1Pod {
    const containers = new Map<string, V1Container>();
    for (const { volume, at, subPath, container = "app" } of mounts) {
      const c = containers.get(container) ?? { name: container, volumeMounts: [] };
      c.volumeMounts!.push({ name: volume, mountPath: at, ...(subPath ? { subPath } : {}) });
      containers.set(container, c);
    }
    return {
      metadata: { name: "db-0" },
      spec: {
        ...(nodeName ? { nodeName } : {}),
        containers: [...containers.values()],
        // The sidecar's own (read-only) mounts never decide: only application containers count.
        initContainers: [
          {
            name: SIDECAR_CONTAINER,
            restartPolicy: "Always",
            volumeMounts: [{ name: "sidecar-scratch", mountPath: "/data/db" }],
          },
        ],
        volumes,
      },
    };
  }
  const claim = (name: string, claimName: string): V1Volume => ({
    name,
    persistentVolumeClaim: { claimName },
  });
  const emptyDir = (name: string): V1Volume => ({ name, emptyDir: {} });
  const volumes = [
    claim("data", "db-data"),
    claim("wal", "db-wal"),
    emptyDir("cache"),
    emptyDir("sidecar-scratch"),
  ];

  it("is the claim mounted over the path, with the pod's node", () => {
    const pod = podWith([{ volume: "data", at: "/data" }], volumes, "node-a");
    assert.deepEqual(claimBehind(pod, "/data/db"), {
      claimName: "db-data",
      mountPath: "/data",
      nodeName: "node-a",
    });
    assert.deepEqual(claimBehind(pod, "/data"), {
      claimName: "db-data",
      mountPath: "/data",
      nodeName: "node-a",
    });
    assert.equal(claimBehind(pod, "/database"), undefined, "a prefix of a name is no parent directory");
    assert.equal(claimBehind(pod, "/srv"), undefined);
  });

  it("is decided by the longest covering mount, claim or not", () => {
    const pod = podWith(
      [
        { volume: "data", at: "/var/lib/db" },
        { volume: "wal", at: "/var/lib/db/wal", container: "sidecar-of-the-app" },
        { volume: "cache", at: "/var/lib/db/cache" },
      ],
      volumes,
    );
    assert.equal(claimBehind(pod, "/var/lib/db/base")?.claimName, "db-data");
    assert.equal(claimBehind(pod, "/var/lib/db/wal/0001")?.claimName, "db-wal");
    assert.deepEqual(claimBehind(pod, "/var/lib/db/wal"), {
      claimName: "db-wal",
      mountPath: "/var/lib/db/wal",
    });
    assert.equal(claimBehind(pod, "/var/lib/db/cache/x"), undefined, "an emptyDir inside the claim's mount");
    assert.equal(claimBehind(pod, "/var/lib/db/cache"), undefined);
    assert.equal(claimBehind(pod, "/var/lib/db/cachet")?.claimName, "db-data");
  });

  it("carries the mount's subPath", () => {
    const pod = podWith([{ volume: "data", at: "/data", subPath: "tenants/a" }], volumes);
    assert.deepEqual(claimBehind(pod, "/data/x"), {
      claimName: "db-data",
      mountPath: "/data",
      subPath: "tenants/a",
    });
  });

  it("takes a claim mounted at / for every path, and loses to any deeper mount", () => {
    const pod = podWith(
      [
        { volume: "data", at: "/" },
        { volume: "cache", at: "/tmp" },
      ],
      volumes,
    );
    assert.deepEqual(claimBehind(pod, "/srv/data"), { claimName: "db-data", mountPath: "/" });
    assert.deepEqual(claimBehind(pod, "/"), { claimName: "db-data", mountPath: "/" });
    assert.equal(claimBehind(pod, "/tmp/x"), undefined);
  });

  it("reads mount paths with trailing slashes as without", () => {
    const pod = podWith(
      [
        { volume: "data", at: "/data/" },
        { volume: "cache", at: "/data/cache//" },
      ],
      volumes,
    );
    assert.deepEqual(claimBehind(pod, "/data"), { claimName: "db-data", mountPath: "/data" });
    assert.deepEqual(claimBehind(pod, "/data/db"), { claimName: "db-data", mountPath: "/data" });
    assert.equal(claimBehind(pod, "/data/cache"), undefined);
    assert.equal(claimBehind(pod, "/data/cache/x"), undefined);
  });

  it("is undefined for a pod without mounts or volumes", () => {
    assert.equal(
      claimBehind({ metadata: { name: "x" }, spec: { containers: [{ name: "app" }] } }, "/data"),
      undefined,
    );
    assert.equal(claimBehind({ metadata: { name: "x" } }, "/data"), undefined);
    // A mount of a volume the pod does not declare is no claim.
    assert.equal(claimBehind(podWith([{ volume: "nowhere", at: "/data" }], []), "/data"), undefined);
  });
});
