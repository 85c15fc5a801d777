/**
 * The Offsite API on a real kube-apiserver: the CRDs are structural and Established,
 * every example applies, and bad input is refused by the API server itself with a message
 * that names the field — through the real kubectl, as a user would see it.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { ApiextensionsV1Api, CustomObjectsApi } from "@kubernetes/client-node";
import { stringify } from "yaml";
import { GROUP, KINDS, VERSION } from "../../crds/definitions.ts";
import { useTestCluster } from "../cluster/testCluster.ts";

const cluster = useTestCluster();
const EXAMPLES = join(import.meta.dirname, "..", "..", "crds", "examples");

function manifest(kind: string, name: string, spec: unknown): string {
  return stringify({ apiVersion: `${GROUP}/${VERSION}`, kind, metadata: { name }, spec });
}

const validJob = {
  source: { podSelector: { matchLabels: { app: "cms" } } },
  target: { offsiteServer: { name: "vault" } },
};
const validPair = { primary: { name: "web-a" }, standby: { name: "web-b" }, service: { name: "web" } };

/** kubectl create of an object that must be refused; returns kubectl's error output. */
async function refused(kind: string, name: string, spec: unknown): Promise<string> {
  const result = await cluster.kubectl(
    ["create", "-n", cluster.namespace, "-f", "-"],
    manifest(kind, name, spec),
  );
  assert.notEqual(
    result.code,
    0,
    `${kind}/${name} was accepted but should have been refused:\n${result.stdout}`,
  );
  const get = await cluster.kubectl(["get", kind.toLowerCase(), name, "-n", cluster.namespace]);
  assert.notEqual(get.code, 0, `${kind}/${name} exists after being refused`);
  return result.stderr;
}

describe("the Offsite CRDs on a real API server", () => {
  it("are Established, with names accepted and no NonStructuralSchema condition", async () => {
    const api = cluster.kc.makeApiClient(ApiextensionsV1Api);
    for (const kind of KINDS) {
      const crd = await api.readCustomResourceDefinition({ name: `${kind.plural}.${GROUP}` });
      const conditions = crd.status?.conditions ?? [];
      const status = (type: string) => conditions.find((c) => c.type === type)?.status;
      assert.equal(status("Established"), "True", `${kind.kind} Established`);
      assert.equal(status("NamesAccepted"), "True", `${kind.kind} NamesAccepted`);
      assert.equal(
        status("NonStructuralSchema"),
        undefined,
        `${kind.kind} has no NonStructuralSchema condition`,
      );
      assert.deepEqual(crd.spec.names.categories, ["offsite"]);
    }
  });

  it("accept every example, and the API server fills the defaults", async () => {
    const files = readdirSync(EXAMPLES).filter((f) => f.endsWith(".yaml"));
    for (const file of files) {
      const result = await cluster.kubectl(["apply", "-n", cluster.namespace, "-f", join(EXAMPLES, file)]);
      assert.equal(result.code, 0, `${file}: ${result.stderr}`);
    }
    const objects = cluster.kc.makeApiClient(CustomObjectsApi);
    const vault = (await objects.getNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: cluster.namespace,
      plural: "offsiteservers",
      name: "vault",
    })) as { spec: Record<string, unknown> };
    assert.equal(vault.spec.port, 5722);
    assert.equal(vault.spec.retainPolicy, "Retain");
    assert.deepEqual(vault.spec.storage, { size: "10Gi" });
    assert.equal((vault.spec.service as { type: string }).type, "ClusterIP");

    const listed = await cluster.kubectl(["get", "offsite", "-n", cluster.namespace, "-o", "name"]);
    assert.equal(listed.code, 0, listed.stderr);
    assert.equal(
      listed.stdout.trim().split("\n").length,
      files.length,
      "the offsite category lists every example",
    );
  });

  it("make kubectl get useful: short names and printer columns", async () => {
    const servers = await cluster.kubectl(["get", "osrv", "-n", cluster.namespace]);
    assert.equal(servers.code, 0, servers.stderr);
    assert.match(servers.stdout.split("\n")[0]!, /NAME\s+PHASE\s+READY\s+ENDPOINT\s+AGE/);
    const jobs = await cluster.kubectl(["get", "bj", "-n", cluster.namespace]);
    assert.match(jobs.stdout, /MODE\s+SCHEDULE\s+PHASE\s+LAST SUCCESS/);
    assert.match(jobs.stdout, /cms-uploads-nightly\s+Backup\s+30 2 \* \* \*/);
    const pairs = await cluster.kubectl(["get", "rp", "-n", cluster.namespace]);
    assert.match(pairs.stdout, /PHASE\s+ACTIVE\s+LAG/);
  });

  it("document every field for kubectl explain", async () => {
    const port = await cluster.kubectl(["explain", "offsiteserver.spec.port"]);
    assert.equal(port.code, 0, port.stderr);
    assert.match(port.stdout, /TCP port the receiver listens on/);
    assert.match(port.stdout, /1024-49151/);
    const schedule = await cluster.kubectl(["explain", "backupjob.spec.schedule"]);
    assert.match(schedule.stdout, /When to run, in cron format/);
    const failover = await cluster.kubectl(["explain", "replicationpair.spec.failover", "--recursive"]);
    assert.match(failover.stdout, /heartbeatTimeout/);
  });

  describe("refuse bad input with a message naming the field", () => {
    it("port 80 and port 49152", async () => {
      for (const port of [80, 49152]) {
        const error = await refused("OffsiteServer", `port-${port}`, { port });
        assert.match(error, /spec\.port/);
        assert.match(error, /port must be a registered port in 1024-49151/);
      }
    });

    it("a bad cron string", async () => {
      for (const schedule of ["every night", "61 * * * *", "* * * *"]) {
        const error = await refused("BackupJob", "bad-cron", { ...validJob, schedule });
        assert.match(error, /spec\.schedule/);
        assert.match(error, /must be a cron expression of five fields/);
      }
    });

    it("both or neither target forms", async () => {
      const both = await refused("BackupJob", "both-targets", {
        ...validJob,
        target: { offsiteServer: { name: "vault" }, offsiteServerSelector: { matchLabels: { pool: "eu" } } },
      });
      assert.match(both, /spec\.target/);
      assert.match(both, /exactly one of offsiteServer/);
      const neither = await refused("BackupJob", "no-target", { ...validJob, target: {} });
      assert.match(neither, /spec\.target/);
      assert.match(neither, /exactly one of offsiteServer/);
    });

    it("primary = standby", async () => {
      const error = await refused("ReplicationPair", "same-sides", {
        ...validPair,
        standby: { name: "web-a" },
      });
      assert.match(error, /spec\.standby\.name/);
      assert.match(error, /primary and standby must be different workloads/);
    });

    it("a GUID that breaks the one GUID rule, naming the field; readable GUIDs are accepted", async () => {
      // The same rule as the agent's (contract/guid.ts): test/agent/receiverPolicies.test.ts
      // pushes as site shop-eu / source orders-db and proves the receiver accepts them.
      const job = await refused("BackupJob", "bad-guid", {
        ...validJob,
        source: { ...validJob.source, guid: "Orders_DB" },
      });
      assert.match(job, /spec\.source\.guid/);
      assert.match(job, /lower-case letters, digits or '-'/);
      const site = await refused("BackupJob", "bad-site", { ...validJob, siteGUID: "shop.eu" });
      assert.match(site, /spec\.siteGUID/);
      const suspended = await refused("OffsiteServer", "bad-suspended", { suspendedSources: ["../x"] });
      assert.match(suspended, /spec\.suspendedSources\[0\]/);
      const accepted = await cluster.kubectl(
        ["create", "-n", cluster.namespace, "-f", "-"],
        manifest("BackupJob", "readable-guid", {
          ...validJob,
          siteGUID: "shop-eu",
          source: { ...validJob.source, guid: "orders-db" },
        }),
      );
      assert.equal(accepted.code, 0, accepted.stderr);
    });

    it("an unknown field", async () => {
      const error = await refused("OffsiteServer", "unknown-field", { port: 5722, prot: 5723 });
      assert.match(error, /unknown field "spec\.prot"/);
    });

    it("a negative size", async () => {
      const error = await refused("OffsiteServer", "negative-size", { storage: { size: "-10Gi" } });
      assert.match(error, /spec\.storage\.size/);
      assert.match(error, /non-negative size/);
      const negativeInteger = await refused("BackupJob", "negative-limit", {
        ...validJob,
        filters: { maxFileSize: -1 },
      });
      assert.match(negativeInteger, /spec\.filters\.maxFileSize/);
    });

    it("a bad duration, a bad enum value and a name too long for the derived objects", async () => {
      const duration = await refused("ReplicationPair", "bad-duration", {
        ...validPair,
        failover: { heartbeatTimeout: "3 seconds" },
      });
      assert.match(duration, /spec\.failover\.heartbeatTimeout/);
      assert.match(duration, /must be a duration such as 30s/);
      const mode = await refused("BackupJob", "bad-mode", { ...validJob, mode: "Sync" });
      assert.match(mode, /spec\.mode/);
      assert.match(mode, /Unsupported value: "Sync"/);
      const longName = "a".repeat(53);
      const name = await refused("OffsiteServer", longName, {});
      assert.match(name, /metadata\.name must be at most 52 characters/);
    });

    it("options that belong to another mode, a nodePort without NodePort, a claim and a size", async () => {
      const compare = await refused("BackupJob", "compare-on-backup", {
        ...validJob,
        compare: { checksum: true },
      });
      assert.match(compare, /spec\.compare/);
      const nodePort = await refused("OffsiteServer", "nodeport-clusterip", { service: { nodePort: 30722 } });
      assert.match(nodePort, /spec\.service\.nodePort/);
      const claim = await refused("OffsiteServer", "claim-and-size", {
        storage: { existingClaim: "data", size: "1Gi" },
      });
      assert.match(claim, /spec\.storage/);
      assert.match(claim, /either existingClaim, or size/);
    });
  });
});
