/**
 * The chart's output on a real API server: every object helm renders is accepted by
 * server-side dry-run (schemas, RBAC objects, the Deployment's pod spec), as a user's
 * `helm install` would be. The chart installed for real, running its operator from the
 * images built here, is the real node's suite (test/e2e/).
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { helmTemplateText } from "../../helm/renderChart.ts";
import { useTestCluster } from "../cluster/testCluster.ts";

const cluster = useTestCluster();

describe("the Helm chart on a real API server", () => {
  it("renders objects the API server accepts (kubectl apply --dry-run=server)", async () => {
    const manifest = await helmTemplateText("offsite", cluster.namespace, ["--set", "replicaCount=2"]);
    const applied = await cluster.kubectl(
      ["apply", "--dry-run=server", "--server-side", "--force-conflicts", "-n", cluster.namespace, "-f", "-"],
      manifest,
    );
    assert.equal(applied.code, 0, applied.stderr);
    for (const kind of [
      "customresourcedefinition.apiextensions.k8s.io/offsiteservers.offsite.dev",
      "deployment.apps/offsite",
      "clusterrole.rbac.authorization.k8s.io/offsite",
      "role.rbac.authorization.k8s.io/offsite-leader-election",
      "serviceaccount/offsite",
    ])
      assert.match(
        applied.stdout,
        new RegExp(`${kind.replace(/[./]/g, "\\$&")} serverside-applied \\(server dry run\\)`),
      );
  });
});
