/**
 * The main job, `npm start`. Without a cluster: starts a local Kubernetes control plane
 * (etcd, kube-apiserver, controller-manager, scheduler, kwok with a fake node), installs
 * the Offsite CRDs, runs the operator, applies the examples and prints how to use kubectl
 * against it, then keeps running until Ctrl-C. With `--kubeconfig PATH`: does the same
 * on that cluster (the operator then uses leader election, so one already deployed
 * there keeps the lead and this one stands by).
 *
 *   npm start                                 local control plane, until Ctrl-C
 *   npm start -- --kubeconfig ~/.kube/config  an existing cluster (kind, ...)
 *   npm start -- --exit                       set up, print, stop (used by the tests)
 */
import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { KubeConfig } from "@kubernetes/client-node";
import { pino } from "pino";
import { installCrds } from "../crds/install.ts";
import { binaryPath } from "../test/cluster/binaries.ts";
import { ControlPlane, freePort, runKubectl } from "../test/cluster/controlPlane.ts";
import { OperatorManager } from "../operator/manager.ts";
import { loadConfig } from "../operator/runtime/config.ts";

const ROOT = resolve(import.meta.dirname, "..");
const DEMO_NAMESPACE = "offsite-demo";

const USAGE = `usage: npm start [-- --kubeconfig PATH] [--exit]
  --kubeconfig PATH  use this cluster instead of starting a local control plane
  --exit             stop after setting up (the local control plane is stopped too)`;

async function main(): Promise<void> {
  let args;
  try {
    args = parseArgs({
      options: {
        kubeconfig: { type: "string" },
        exit: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    }).values;
  } catch (error) {
    console.error(`${(error as Error).message}\n${USAGE}`);
    process.exit(2);
  }
  if (args.help) {
    console.log(USAGE);
    return;
  }

  let plane: ControlPlane | undefined;
  const stateDir = process.env.OFFSITE_STATE_DIR ?? join(ROOT, ".offsite");
  mkdirSync(stateDir, { recursive: true });
  let kubeconfigPath: string;
  if (args.kubeconfig) {
    kubeconfigPath = resolve(args.kubeconfig);
    console.log(`Using the cluster in ${kubeconfigPath}`);
  } else {
    console.log("Starting a local Kubernetes control plane (etcd, kube-apiserver, controllers, kwok)...");
    plane = await ControlPlane.start({ controllers: true });
    kubeconfigPath = join(stateDir, "kubeconfig");
    writeFileSync(kubeconfigPath, plane.kubeconfigYaml(), { mode: 0o600 });
  }

  // Ctrl-C is handled by the harness (test/cluster/managedProcess.ts): it stops the
  // control plane and removes its files, then exits with 130.
  let operator: OperatorManager | undefined;
  const stop = async (code: number) => {
    await operator?.stop();
    await plane?.stop();
    process.exit(code);
  };

  try {
    const kc = new KubeConfig();
    kc.loadFromFile(kubeconfigPath);
    const crds = await installCrds(kc);
    console.log(`Installed ${crds.join(", ")}`);

    const kubectl = (a: string[], input?: string) => runKubectl(kubeconfigPath, a, input);
    const namespace = await kubectl(["create", "namespace", DEMO_NAMESPACE]);
    if (namespace.code !== 0 && !namespace.stderr.includes("AlreadyExists"))
      throw new Error(namespace.stderr);
    // The operator runs in this process. On the local plane it is alone, so it skips leader
    // election; on a given cluster it campaigns like any replica and stands by if another
    // holds the Lease. Its JSON logs go to a file so they do not drown this terminal.
    const operatorLog = join(stateDir, "operator.log");
    const config = loadConfig(["--metrics-address", `127.0.0.1:${await freePort()}`], {
      OFFSITE_NAMESPACE: DEMO_NAMESPACE,
      OFFSITE_LEADER_ELECTION: plane ? "false" : "true",
    });
    const logger = pino(
      { level: config.logLevel, base: { component: "offsite-operator", identity: config.identity } },
      pino.destination({ dest: operatorLog, sync: true }),
    );
    operator = new OperatorManager(config, kc, logger);
    await operator.start();
    console.log(`The operator runs (logs: ${operatorLog}, metrics: http://${config.metricsAddress}/metrics)`);
    const examples = join(ROOT, "crds", "examples");
    for (const file of readdirSync(examples).filter((f) => f.endsWith(".yaml"))) {
      const applied = await kubectl(["apply", "-n", DEMO_NAMESPACE, "-f", join(examples, file)]);
      if (applied.code !== 0) throw new Error(`applying ${file} failed: ${applied.stderr}`);
    }
    // Give the operator a moment to bring the simplest server up before showing the list.
    for (let i = 0; i < 60; i++) {
      const ready = await kubectl([
        "get",
        "osrv",
        "vault",
        "-n",
        DEMO_NAMESPACE,
        "-o",
        'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
      ]);
      if (ready.stdout === "True") break;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    const listing = await kubectl(["get", "offsite", "-n", DEMO_NAMESPACE]);
    console.log(
      `\nThe examples from crds/examples/ are in namespace ${DEMO_NAMESPACE}:\n\n${listing.stdout}`,
    );
    console.log(
      [
        "Use kubectl against it:",
        `  export KUBECONFIG=${kubeconfigPath}`,
        `  alias kubectl=${binaryPath("kubectl")}`,
        `  kubectl get offsite -n ${DEMO_NAMESPACE}`,
        "  kubectl explain offsiteserver.spec",
        "  kubectl get osrv,bj,rp -A",
        "",
        "The operator reconciles OffsiteServers; BackupJobs and ReplicationPairs are accepted by the API but",
        "not acted on yet. Under kwok, pods are simulated: no receiver process runs.",
      ].join("\n"),
    );
    if (args.exit) return stop(0);
    if (plane) console.log("\nThe control plane runs until Ctrl-C.");
    else return;
    await new Promise(() => undefined);
  } catch (error) {
    console.error(`npm start failed: ${(error as Error).message}`);
    await stop(1);
  }
}

await main();
