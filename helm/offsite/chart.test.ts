/**
 * The chart as helm renders it, with the helm binary the harness builds: it lints
 * strictly; it carries exactly the generated CRDs and the RBAC rules the integration
 * suite runs the operator under; the operator it deploys runs locked down, with args the
 * operator's own parser accepts; values.schema.json refuses bad values, naming them.
 * test/integration/helmChart.test.ts applies the same output to a real API server.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import type { V1ClusterRole, V1Deployment, V1Role, V1Service } from "@kubernetes/client-node";
import { parse, parseAllDocuments } from "yaml";
import { loadConfig } from "../../operator/runtime/config.ts";
import { binaryPath } from "../../test/cluster/binaries.ts";
import { helmFailure, helmTemplate, type RenderedObject as Rendered } from "../renderChart.ts";
import { CHART_DIR, chartCopies } from "../syncChartFiles.ts";

const ROOT = join(import.meta.dirname, "..", "..");
const run = promisify(execFile);
const helm = (...args: string[]) => helmTemplate("offsite", "offsite-system", args);
const helmFails = (...args: string[]) => helmFailure(["template", "offsite", CHART_DIR, ...args]);

describe("the Helm chart", () => {
  it("passes helm lint --strict", async () => {
    const { stdout } = await run(binaryPath("helm"), ["lint", "--strict", CHART_DIR]);
    assert.match(stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
  });

  it("holds current copies of the generated CRDs and the operator's RBAC (npm run chart:sync)", () => {
    for (const { file, text } of chartCopies())
      assert.equal(readFileSync(file, "utf8"), text, `${file} is stale`);
  });

  it("renders exactly the generated CRDs, kept on uninstall", async () => {
    const objects = await helm();
    const crds = objects.filter((o) => o.kind === "CustomResourceDefinition");
    const generated = readdirSync(join(ROOT, "crds", "generated")).map(
      (name) => parse(readFileSync(join(ROOT, "crds", "generated", name), "utf8")) as Rendered,
    );
    assert.deepEqual(crds.map((c) => c.metadata.name).sort(), generated.map((c) => c.metadata.name).sort());
    for (const crd of crds) {
      const source = generated.find((g) => g.metadata.name === crd.metadata.name)!;
      assert.deepEqual(crd.spec, source.spec, `${crd.metadata.name}: spec as generated`);
      assert.equal(crd.metadata.annotations?.["helm.sh/resource-policy"], "keep");
    }
    const without = await helm("--set", "crds.enabled=false");
    assert.equal(without.filter((o) => o.kind === "CustomResourceDefinition").length, 0);
  });

  it("grants the rules of operator/deploy/rbac.yaml, no more", async () => {
    const objects = await helm();
    const source = parseAllDocuments(readFileSync(join(ROOT, "operator", "deploy", "rbac.yaml"), "utf8")).map(
      (d) => d.toJS() as V1ClusterRole | V1Role,
    );
    for (const kind of ["ClusterRole", "Role"]) {
      const rendered = objects.find((o) => o.kind === kind) as unknown as V1ClusterRole;
      assert.deepEqual(rendered.rules, source.find((s) => s.kind === kind)!.rules, kind);
    }
    const binding = objects.find((o) => o.kind === "ClusterRoleBinding") as Rendered & {
      subjects: { name: string; namespace: string }[];
    };
    assert.deepEqual(binding.subjects, [
      { kind: "ServiceAccount", name: "offsite", namespace: "offsite-system" },
    ]);
  });

  it("runs the operator locked down, with args its own parser accepts", async () => {
    const objects = await helm("--set", "replicaCount=2", "--set", "agentImage.tag=test");
    const deployment = objects.find((o) => o.kind === "Deployment") as unknown as V1Deployment;
    assert.equal(deployment.spec?.replicas, 2);
    const pod = deployment.spec.template.spec!;
    assert.equal(pod.securityContext?.runAsNonRoot, true);
    assert.equal(pod.securityContext?.seccompProfile?.type, "RuntimeDefault");
    const container = pod.containers[0]!;
    assert.equal(container.securityContext?.readOnlyRootFilesystem, true);
    assert.equal(container.securityContext?.allowPrivilegeEscalation, false);
    assert.deepEqual(container.securityContext?.capabilities?.drop, ["ALL"]);
    assert.equal(container.livenessProbe?.httpGet?.path, "/healthz");
    assert.equal(container.readinessProbe?.httpGet?.path, "/readyz");
    assert.ok(container.resources?.limits?.memory);
    const config = loadConfig(container.args ?? [], {
      OFFSITE_NAMESPACE: "offsite-system",
      OFFSITE_IDENTITY: "pod-0",
    });
    assert.equal(config.agentImage, "ghcr.io/offsite-dev/offsite-agent:test");
    assert.equal(config.leaderElection, true);
    assert.equal(config.leaseDuration, 15_000);
  });

  it("serves the injection webhook behind a Service that selects the operator pods, or not at all", async () => {
    const objects = await helm(
      "--set",
      "webhook.port=9555",
      "--set",
      "agentSidecar.resources.requests.cpu=25m",
    );
    const deployment = objects.find((o) => o.kind === "Deployment") as unknown as V1Deployment;
    const container = deployment.spec!.template.spec!.containers[0]!;
    const service = objects.find(
      (o) => o.kind === "Service" && o.metadata.name === "offsite-webhook",
    ) as unknown as V1Service;
    assert.ok(service, "a webhook Service");
    assert.deepEqual(service.spec?.selector, deployment.spec?.selector.matchLabels);
    assert.deepEqual(service.spec?.ports, [
      { name: "webhook", port: 443, targetPort: "webhook", protocol: "TCP" },
    ]);
    assert.equal(container.ports?.find((p) => p.name === "webhook")?.containerPort, 9555);
    const config = loadConfig(container.args ?? [], { OFFSITE_NAMESPACE: "offsite-system" });
    assert.equal(config.webhookAddress, ":9555");
    assert.equal(config.webhookService, service.metadata?.name);
    assert.equal(config.webhookUrl, undefined);
    assert.deepEqual(
      [config.agentCpuRequest, config.agentMemoryRequest, config.agentMemoryLimit],
      ["25m", "32Mi", "256Mi"],
    );

    const off = await helm("--set", "webhook.enabled=false");
    assert.ok(!off.some((o) => o.kind === "Service" && o.metadata.name === "offsite-webhook"));
    const offContainer = (off.find((o) => o.kind === "Deployment") as unknown as V1Deployment).spec!.template
      .spec!.containers[0]!;
    assert.equal(loadConfig(offContainer.args ?? [], {}).webhookAddress, undefined);
    assert.ok(!offContainer.ports?.some((p) => p.name === "webhook"));
  });

  it("refuses bad values with a message naming them", async () => {
    assert.match(await helmFails("--set", "replicaCount=-1"), /replicaCount/);
    assert.match(await helmFails("--set", "replicaCount=two"), /replicaCount/);
    assert.match(await helmFails("--set", "imageTag=1.0"), /imageTag/);
    assert.match(await helmFails("--set", "image.pullPolicy=Sometimes"), /pullPolicy/);
    assert.match(await helmFails("--set", "operator.leaderElection.leaseDuration=soon"), /leaseDuration/);
    assert.match(await helmFails("--set", "agentSidecar.resources.requests.cpu=lots"), /cpu/);
    assert.match(await helmFails("--set", "webhook.port=80"), /port/);
  });
});
