import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { desiredDataClaim, desiredService, desiredStatefulSet } from "./desiredState.ts";
import { aClaim, anOffsiteServer } from "./fixtures.ts";

const image = "offsite/agent:test";

describe("desired receiver objects", () => {
  it("runs one non-root receiver with a read-only root on the spec's port, owned by the OffsiteServer", () => {
    const server = anOffsiteServer().withPort(6000);
    const sts = desiredStatefulSet({
      server: server.identity(),
      spec: server.spec(),
      defaultImage: image,
      tlsChecksum: "c1",
    });
    assert.equal(sts.spec?.replicas, 1);
    assert.deepEqual(
      sts.metadata?.ownerReferences?.map((o) => [o.kind, o.name, o.controller]),
      [["OffsiteServer", "vault", true]],
    );
    const pod = sts.spec.template.spec!;
    const container = pod.containers[0]!;
    assert.equal(container.image, image);
    assert.ok(container.args?.includes("--port=6000"));
    assert.ok(container.args?.includes("receive"));
    assert.equal(container.ports?.[0]?.containerPort, 6000);
    assert.equal(pod.securityContext?.runAsNonRoot, true);
    assert.equal(container.securityContext?.readOnlyRootFilesystem, true);
    assert.deepEqual(container.securityContext?.capabilities?.drop, ["ALL"]);
    assert.equal(pod.volumes?.find((v) => v.name === "data")?.persistentVolumeClaim?.claimName, "vault-data");
    assert.equal(pod.volumes?.find((v) => v.name === "tls")?.secret?.secretName, "vault-tls");
    assert.equal(pod.automountServiceAccountToken, false, "the receiver needs no API access");
    assert.equal(
      container.terminationMessagePolicy,
      "FallbackToLogsOnError",
      "the agent's last error line becomes the termination message status reports",
    );
  });

  it("mounts an existing claim instead of its own, and suspends by scaling to zero", () => {
    const server = anOffsiteServer().withStorage({ existingClaim: "legacy-backups" }).suspended();
    const sts = desiredStatefulSet({
      server: server.identity(),
      spec: server.spec(),
      defaultImage: image,
      tlsChecksum: "c",
    });
    assert.equal(sts.spec?.replicas, 0);
    assert.equal(
      sts.spec.template.spec!.volumes?.find((v) => v.name === "data")?.persistentVolumeClaim?.claimName,
      "legacy-backups",
    );
    assert.deepEqual(desiredDataClaim(server.identity(), server.spec(), undefined), { problems: [] });
  });

  it("rolls the pod on a restart request and on a new certificate, and only then", () => {
    const plain = anOffsiteServer();
    const base = desiredStatefulSet({
      server: plain.identity(),
      spec: plain.spec(),
      defaultImage: image,
      tlsChecksum: "c1",
    });
    const again = desiredStatefulSet({
      server: plain.identity(),
      spec: plain.spec(),
      defaultImage: image,
      tlsChecksum: "c1",
    });
    assert.deepEqual(base, again, "the same inputs give the same object (idempotent apply)");
    const restarted = anOffsiteServer().restartedAt("2026-11-21T10:00:00Z");
    const withRestart = desiredStatefulSet({
      server: restarted.identity(),
      spec: restarted.spec(),
      defaultImage: image,
      tlsChecksum: "c1",
    });
    assert.equal(
      withRestart.spec!.template.metadata!.annotations!["offsite.dev/restarted-at"],
      "2026-11-21T10:00:00Z",
    );
    const rotated = desiredStatefulSet({
      server: plain.identity(),
      spec: plain.spec(),
      defaultImage: image,
      tlsChecksum: "c2",
    });
    assert.notDeepEqual(rotated.spec!.template.metadata, base.spec!.template.metadata);
  });

  it("exposes the port through a Service of the requested type", () => {
    const clusterIp = desiredService(anOffsiteServer().identity(), anOffsiteServer().spec());
    assert.equal(clusterIp.spec?.type, "ClusterIP");
    assert.equal(clusterIp.spec?.ports?.[0]?.port, 5722);
    assert.equal(clusterIp.spec?.ports?.[0]?.nodePort, undefined);
    const server = anOffsiteServer().withService({ type: "NodePort", nodePort: 30722 });
    const nodePort = desiredService(server.identity(), server.spec());
    assert.equal(nodePort.spec?.type, "NodePort");
    assert.equal(nodePort.spec?.ports?.[0]?.nodePort, 30722);
    assert.deepEqual(nodePort.spec?.selector, {
      "offsite.dev/offsiteserver": "vault",
      "app.kubernetes.io/name": "offsite-receiver",
    });
  });
});

describe("the data claim", () => {
  const server = anOffsiteServer().withStorage({ size: "20Gi", storageClassName: "fast" });

  it("is created at the requested size and class, without an owner reference", () => {
    const { claim, problems } = desiredDataClaim(server.identity(), server.spec(), undefined);
    assert.deepEqual(problems, []);
    assert.equal(claim?.metadata?.name, "vault-data");
    assert.equal(claim?.spec?.resources?.requests?.storage, "20Gi");
    assert.equal(claim?.spec?.storageClassName, "fast");
    assert.equal(claim?.metadata?.ownerReferences, undefined, "garbage collection must never delete data");
  });

  it("grows with the spec", () => {
    const { claim, problems } = desiredDataClaim(server.identity(), server.spec(), aClaim("10Gi", "fast"));
    assert.deepEqual(problems, []);
    assert.equal(claim?.spec?.resources?.requests?.storage, "20Gi");
  });

  it("refuses to shrink or change class, keeping what exists and saying why", () => {
    const { claim, problems } = desiredDataClaim(server.identity(), server.spec(), aClaim("50Gi", "slow"));
    assert.equal(claim?.spec?.resources?.requests?.storage, "50Gi");
    assert.equal(claim?.spec?.storageClassName, "slow");
    assert.deepEqual(
      problems.map((p) => p.reason),
      ["StorageShrinkRefused", "StorageClassImmutable"],
    );
    assert.match(problems[0]!.message, /cannot shrink/);
  });
});
