/**
 * The injection decision and its JSON Patch, applied to pods of several shapes: what the
 * sidecar looks like (its args through the agent's own parser), what it mounts and how,
 * and every case where the pod must be left as it is.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import type { V1Container, V1Pod, V1Volume } from "@kubernetes/client-node";
import {
  AGENT_CONTROL_CERTS_DIR,
  AGENT_CONTROL_PORT,
  AGENT_CONTROL_SECRET,
  AGENT_HEALTH_PORT,
  INJECTED_ANNOTATION,
  SIDECAR_CONTAINER,
} from "../agentControl/names.ts";
import { SETTINGS, aJob, aPod, sidecarCommandLine } from "./fixtures.ts";
import {
  AGENT_STATE_DIR,
  CONTROL_VOLUME,
  NO_TOKEN_VOLUME,
  SERVICE_ACCOUNT_TOKEN_DIR,
  STATE_VOLUME,
  injectionFor,
  type InjectionJob,
  type JsonPatchOperation,
  type SidecarSettings,
} from "./sidecarInjection.ts";

const shop = aJob("shop-nightly", { matchLabels: { app: "shop" } });

/** RFC 6902 "add", all the webhook emits, applied to a copy. */
function applyPatch<T>(document: T, patch: JsonPatchOperation[]): T {
  const copy = structuredClone(document) as Record<string, unknown>;
  for (const { op, path, value } of patch) {
    assert.equal(op, "add");
    const tokens = path
      .split("/")
      .slice(1)
      .map((t) => t.replace(/~1/g, "/").replace(/~0/g, "~"));
    const last = tokens.pop()!;
    let parent: Record<string, unknown> | unknown[] = copy;
    for (const token of tokens) {
      const next = parent[token];
      assert.ok(next !== undefined, `${path}: ${token} does not exist`);
      parent = next as Record<string, unknown>;
    }
    if (Array.isArray(parent)) {
      assert.equal(last, "-", `${path}: only appends`);
      parent.push(structuredClone(value));
    } else {
      assert.ok(!(last in parent), `${path}: add does not replace here`);
      parent[last] = structuredClone(value);
    }
  }
  return copy as T;
}

function injected(pod: V1Pod, jobs: InjectionJob[] = [shop], settings: SidecarSettings = SETTINGS) {
  const decision = injectionFor(pod, jobs, settings);
  assert.ok(decision.inject, `expected an injection, got: ${decision.inject ? "" : decision.reason}`);
  const result = applyPatch(pod, decision.patch);
  const sidecars = (result.spec?.initContainers ?? []).filter((c) => c.name === SIDECAR_CONTAINER);
  assert.equal(sidecars.length, 1);
  return { decision, pod: result, sidecar: sidecars[0]!, volumes: result.spec?.volumes ?? [] };
}

const mountsOf = (container: V1Container) =>
  Object.fromEntries((container.volumeMounts ?? []).map((m) => [m.mountPath, m]));
const dataMountPaths = (container: V1Container) =>
  (container.volumeMounts ?? [])
    .filter((m) => m.name !== CONTROL_VOLUME && m.name !== NO_TOKEN_VOLUME && m.name !== STATE_VOLUME)
    .map((m) => m.mountPath);

describe("sidecar injection", () => {
  it("adds the agent as a native sidecar whose args the agent accepts, and annotates the pod", () => {
    const pod = aPod();
    const { pod: result, sidecar, volumes } = injected(pod);
    assert.equal(sidecar.restartPolicy, "Always");
    assert.equal(sidecar.image, SETTINGS.image);
    const commandLine = sidecarCommandLine(sidecar);
    assert.equal(commandLine.role, "agent");
    assert.deepEqual(commandLine.options, {
      controlCerts: AGENT_CONTROL_CERTS_DIR,
      host: "0.0.0.0",
      controlPort: AGENT_CONTROL_PORT,
      healthPort: AGENT_HEALTH_PORT,
      allowRestore: false,
      allowStandby: false,
      cache: `${AGENT_STATE_DIR}/cache`,
    });
    // Its cache of the receiver's entries (and a primary's journal) in an emptyDir of its
    // own, kept far below the limit at which the kubelet would evict the app's pod.
    assert.deepEqual(mountsOf(sidecar)[AGENT_STATE_DIR], { name: STATE_VOLUME, mountPath: AGENT_STATE_DIR });
    assert.deepEqual(
      volumes.find((v) => v.name === STATE_VOLUME),
      { name: STATE_VOLUME, emptyDir: { sizeLimit: "1Gi" } },
    );
    // The ports it names are the ports it serves; the probe asks the health port.
    const ports = Object.fromEntries((sidecar.ports ?? []).map((p) => [p.name ?? "", p.containerPort]));
    assert.deepEqual(ports, {
      control: commandLine.options.controlPort,
      health: commandLine.options.healthPort,
    });
    assert.deepEqual(sidecar.livenessProbe?.httpGet, { path: "/healthz", port: "health" });
    assert.equal(sidecar.startupProbe, undefined, "a startupProbe would hold the app's containers back");
    assert.equal(sidecar.readinessProbe, undefined, "a sidecar's readiness counts towards the pod's");
    assert.deepEqual(sidecar.resources, {
      requests: { cpu: "10m", memory: "32Mi" },
      limits: { memory: "256Mi" },
    });
    // The control Secret: optional, read-only, where --control-certs points.
    const control = mountsOf(sidecar)[commandLine.options.controlCerts]!;
    assert.deepEqual(control, { name: CONTROL_VOLUME, mountPath: AGENT_CONTROL_CERTS_DIR, readOnly: true });
    const secret = volumes.find((v) => v.name === CONTROL_VOLUME)?.secret;
    assert.equal(secret?.secretName, AGENT_CONTROL_SECRET);
    assert.equal(secret?.optional, true);
    // No API token: an empty read-only directory where the ServiceAccount plugin would mount it.
    assert.deepEqual(mountsOf(sidecar)[SERVICE_ACCOUNT_TOKEN_DIR], {
      name: NO_TOKEN_VOLUME,
      mountPath: SERVICE_ACCOUNT_TOKEN_DIR,
      readOnly: true,
    });
    assert.deepEqual(
      volumes.find((v) => v.name === NO_TOKEN_VOLUME),
      { name: NO_TOKEN_VOLUME, emptyDir: { medium: "Memory", sizeLimit: "1Mi" } },
    );
    assert.equal(result.metadata?.annotations?.[INJECTED_ANNOTATION], "shop-nightly");
    // The app is untouched: same containers, same volumes (ours come after).
    assert.deepEqual(result.spec?.containers, pod.spec?.containers);
    assert.deepEqual(volumes.slice(0, pod.spec!.volumes!.length), pod.spec?.volumes);
    assert.equal(result.spec?.automountServiceAccountToken, undefined);
  });

  it("mounts the app's data read-only at the app's paths, and not its configuration", () => {
    const { sidecar } = injected(aPod());
    assert.deepEqual(dataMountPaths(sidecar), ["/var/www/uploads", "/var/cache/nginx"]);
    for (const path of dataMountPaths(sidecar)) {
      assert.equal(mountsOf(sidecar)[path]!.readOnly, true, path);
      assert.equal(mountsOf(sidecar)[path]!.recursiveReadOnly, "IfPossible", path);
    }
  });

  it("locks the sidecar down, reading every file with the least the namespace's Pod Security level allows", () => {
    const pod = aPod({
      spec: {
        securityContext: { runAsNonRoot: true, runAsUser: 33, runAsGroup: 33, fsGroup: 33 },
      },
    });
    const context = (podSecurity: SidecarSettings["podSecurity"]) =>
      injected(pod, [shop], { ...SETTINGS, podSecurity }).sidecar.securityContext!;
    for (const level of ["privileged", "baseline", "restricted"] as const) {
      const c = context(level);
      assert.equal(c.allowPrivilegeEscalation, false, level);
      assert.equal(c.readOnlyRootFilesystem, true, level);
      assert.equal(c.privileged, false, level);
      assert.deepEqual(c.seccompProfile, { type: "RuntimeDefault" }, level);
      assert.deepEqual(c.capabilities?.drop, ["ALL"], level);
    }
    // Root with read-and-search only; runAsNonRoot stated, or the pod's true would stop it starting.
    assert.deepEqual(
      [
        context("privileged").runAsUser,
        context("privileged").runAsNonRoot,
        context("privileged").capabilities?.add,
      ],
      [0, false, ["DAC_READ_SEARCH"]],
    );
    // Baseline does not list DAC_READ_SEARCH (PodSecurity would refuse the whole pod).
    assert.deepEqual(context("baseline").capabilities?.add, ["DAC_OVERRIDE"]);
    // Restricted: no root, no capability: the app's own uid and gid.
    const restricted = context("restricted");
    assert.deepEqual(
      [restricted.runAsNonRoot, restricted.runAsUser, restricted.runAsGroup, restricted.capabilities?.add],
      [true, 33, 33, undefined],
    );
  });

  it("leaves a pod no BackupJob selects alone", () => {
    for (const [what, pod, jobs] of [
      ["no jobs", aPod(), []],
      ["other labels", aPod({ labels: { app: "blog", "offsite.dev/inject": "true" } }), [shop]],
      ["a job on a claim, without podSelector", aPod(), [aJob("claim", undefined)]],
      ["a job being deleted", aPod(), [{ ...shop, metadata: { name: "x", deletionTimestamp: new Date() } }]],
    ] as [string, V1Pod, InjectionJob[]][]) {
      const decision = injectionFor(pod, jobs, SETTINGS);
      assert.equal(decision.inject, false, what);
      assert.equal(!decision.inject && decision.notable, false, what);
    }
  });

  it("selects by matchExpressions too, and injects once for several jobs", () => {
    const pod = aPod({ labels: { app: "shop", tier: "web", "offsite.dev/inject": "true" } });
    const expressions = (
      name: string,
      matchExpressions: { key: string; operator: string; values?: string[] }[],
    ) => aJob(name, { matchExpressions });
    const selecting = [
      expressions("in", [{ key: "tier", operator: "In", values: ["web", "api"] }]),
      expressions("not-in", [{ key: "tier", operator: "NotIn", values: ["db"] }]),
      expressions("exists", [{ key: "app", operator: "Exists" }]),
      expressions("does-not-exist", [{ key: "canary", operator: "DoesNotExist" }]),
    ];
    const notSelecting = [
      expressions("in-other", [{ key: "tier", operator: "In", values: ["db"] }]),
      expressions("not-in-web", [{ key: "tier", operator: "NotIn", values: ["web"] }]),
      expressions("exists-missing", [{ key: "canary", operator: "Exists" }]),
      expressions("does-not-exist-present", [{ key: "app", operator: "DoesNotExist" }]),
      aJob("both-must-hold", {
        matchLabels: { app: "shop" },
        matchExpressions: [{ key: "tier", operator: "In", values: ["db"] }],
      }),
    ];
    const { decision, pod: result } = injected(pod, [...notSelecting, ...selecting]);
    assert.ok(decision.inject);
    assert.deepEqual(decision.jobs, ["does-not-exist", "exists", "in", "not-in"]);
    assert.equal(result.metadata?.annotations?.[INJECTED_ANNOTATION], "does-not-exist,exists,in,not-in");
    assert.equal(injectionFor(pod, notSelecting, SETTINGS).inject, false);
  });

  it("is idempotent: a pod that has the agent already is left alone", () => {
    const once = injected(aPod()).pod;
    assert.equal(injectionFor(once, [shop], SETTINGS).inject, false);
    const withAgent = (where: "containers" | "initContainers", name: string) => {
      const pod = aPod();
      pod.spec![where] = [...(pod.spec![where] ?? []), { name, image: "offsite-agent" }];
      return pod;
    };
    assert.equal(injectionFor(withAgent("containers", SIDECAR_CONTAINER), [shop], SETTINGS).inject, false);
    assert.equal(
      injectionFor(withAgent("initContainers", SIDECAR_CONTAINER), [shop], SETTINGS).inject,
      false,
    );
    // The job's own containerName counts too.
    const named = aJob("shop-named", { matchLabels: { app: "shop" } }, "backup");
    assert.equal(injectionFor(withAgent("containers", "backup"), [named], SETTINGS).inject, false);
    assert.equal(injectionFor(withAgent("containers", "backup"), [shop], SETTINGS).inject, true);
  });

  it("mounts every data volume kind and none of the configuration kinds", () => {
    const volumes: V1Volume[] = [
      { name: "pvc", persistentVolumeClaim: { claimName: "c" } },
      { name: "empty", emptyDir: {} },
      { name: "host", hostPath: { path: "/srv/data" } },
      { name: "ephemeral", ephemeral: { volumeClaimTemplate: { spec: { accessModes: ["ReadWriteOnce"] } } } },
      { name: "csi", csi: { driver: "example.csi.k8s.io" } },
      { name: "nfs", nfs: { server: "nfs.example", path: "/export" } },
      { name: "secret", secret: { secretName: "s" } },
      { name: "config", configMap: { name: "c" } },
      { name: "projected", projected: { sources: [] } },
      { name: "downward", downwardAPI: { items: [] } },
      { name: "image", image: { reference: "example/data:1" } },
    ];
    const pod = aPod({
      spec: {
        containers: [
          {
            name: "app",
            image: "app",
            volumeMounts: volumes.map((v) => ({ name: v.name, mountPath: `/m/${v.name}` })),
          },
        ],
        volumes,
      },
    });
    assert.deepEqual(
      dataMountPaths(injected(pod).sidecar),
      ["pvc", "empty", "host", "ephemeral", "csi", "nfs"].map((n) => `/m/${n}`),
    );
  });

  it("keeps subPath, takes each path from the first container that mounts it, and expands subPathExpr alike", () => {
    const pod = aPod({
      spec: {
        containers: [
          {
            name: "web",
            image: "web",
            env: [
              { name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
              { name: "TOKEN", valueFrom: { secretKeyRef: { name: "s", key: "k" } } },
            ],
            volumeMounts: [
              { name: "data", mountPath: "/var/www/uploads", subPath: "uploads" },
              { name: "data", mountPath: "/var/log/app", subPathExpr: "logs/$(POD_NAME)" },
              { name: "data", mountPath: "/var/secret-dir", subPathExpr: "$(TOKEN)" },
            ],
          },
          {
            name: "worker",
            image: "worker",
            volumeMounts: [
              { name: "data", mountPath: "/var/www/uploads", subPath: "other" },
              { name: "data", mountPath: "/srv/media", subPath: "media", readOnly: true },
            ],
          },
        ],
        volumes: [{ name: "data", persistentVolumeClaim: { claimName: "shop-data" } }],
      },
    });
    const { sidecar } = injected(pod);
    const mounts = mountsOf(sidecar);
    assert.deepEqual(dataMountPaths(sidecar), ["/var/www/uploads", "/var/log/app", "/srv/media"]);
    assert.equal(mounts["/var/www/uploads"]!.subPath, "uploads", "the first container's subPath");
    assert.equal(mounts["/srv/media"]!.subPath, "media");
    assert.equal(mounts["/var/log/app"]!.subPathExpr, "logs/$(POD_NAME)");
    // The downward-API variable comes along so the expression names the same directory;
    // the Secret-backed one does not, and neither does the mount that needs it.
    assert.deepEqual(sidecar.env, [
      { name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
    ]);
  });

  it("injects a pod whose app mounts nothing: the agent has only its control Secret and its state", () => {
    const pod = aPod({ spec: { containers: [{ name: "app", image: "app" }] } });
    delete pod.spec!.volumes;
    const { sidecar, volumes, decision } = injected(pod);
    assert.deepEqual(dataMountPaths(sidecar), []);
    assert.deepEqual(
      volumes.map((v) => v.name),
      [STATE_VOLUME, CONTROL_VOLUME, NO_TOKEN_VOLUME],
    );
    assert.ok(decision.inject);
    assert.deepEqual(
      decision.patch.map((p) => p.path),
      ["/spec/initContainers", "/spec/volumes", "/metadata/annotations"],
    );
  });

  it("appends after the app's own init containers and keeps its annotations", () => {
    const pod = aPod();
    pod.metadata!.annotations = { "example.com/owner": "shop-team" };
    pod.spec!.initContainers = [{ name: "migrate", image: "migrate" }];
    const { pod: result, decision } = injected(pod);
    assert.deepEqual(
      result.spec?.initContainers?.map((c) => c.name),
      ["migrate", SIDECAR_CONTAINER],
    );
    assert.deepEqual(result.metadata?.annotations, {
      "example.com/owner": "shop-team",
      [INJECTED_ANNOTATION]: "shop-nightly",
    });
    assert.ok(decision.inject);
    assert.ok(decision.patch.some((p) => p.path === "/metadata/annotations/offsite.dev~1agent-injected-for"));
  });

  it("declines, with a reason worth a warning, a pod it cannot take safely", () => {
    const cases: [string, V1Pod, RegExp][] = [
      [
        "the agent's port",
        aPod({
          spec: {
            containers: [{ name: "app", image: "app", ports: [{ containerPort: AGENT_HEALTH_PORT }] }],
          },
        }),
        new RegExp(`port ${AGENT_HEALTH_PORT}`),
      ],
      [
        "a Windows pod",
        aPod({ spec: { os: { name: "windows" }, containers: [{ name: "app", image: "app" }] } }),
        /Windows/,
      ],
      [
        "a volume of our name",
        aPod({
          spec: {
            containers: [{ name: "app", image: "app" }],
            volumes: [{ name: CONTROL_VOLUME, emptyDir: {} }],
          },
        }),
        new RegExp(CONTROL_VOLUME),
      ],
      [
        "an app container mounting the agent's state volume, which the pod lacks until injected",
        aPod({
          spec: {
            containers: [
              { name: "app", image: "app", volumeMounts: [{ name: STATE_VOLUME, mountPath: "/steal" }] },
            ],
          },
        }),
        new RegExp(`container app mounts ${STATE_VOLUME}`),
      ],
    ];
    for (const [what, pod, reason] of cases) {
      const decision = injectionFor(pod, [shop], SETTINGS);
      assert.ok(!decision.inject, what);
      assert.equal(decision.notable, true, what);
      assert.match(decision.reason, reason, what);
    }
  });
});
