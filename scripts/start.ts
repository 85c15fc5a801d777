/**
 * The main job, `npm start`. Without a cluster: starts a local Kubernetes control plane
 * (etcd, kube-apiserver, controller-manager, scheduler) with a node, installs the Offsite
 * CRDs, runs the operator, applies the examples and prints how to use kubectl against it,
 * then keeps running until Ctrl-C. The node is the real one (kubelet, containerd,
 * kube-proxy, CoreDNS; test/cluster/node/) where this machine can run it (root on Linux),
 * so the demo OffsiteServer's receiver runs for real and the output says how to push to it
 * from this machine; elsewhere kwok's fake node, where pods are simulated. With
 * `--kubeconfig PATH`: the same on that cluster (the operator then uses leader election,
 * so one already deployed there keeps the lead and this one stands by).
 *
 *   npm start                                 local control plane, until Ctrl-C
 *   npm start -- --node kwok                  with kwok's fake node even where a real one can run
 *   npm start -- --kubeconfig ~/.kube/config  an existing cluster (kind, ...)
 *   npm start -- --exit                       set up, print, stop (used by the tests)
 */
import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { KubeConfig, type V1Secret } from "@kubernetes/client-node";
import { pino } from "pino";
import { installCrds } from "../crds/install.ts";
import { binaryPath } from "../test/cluster/binaries.ts";
import { ControlPlane, freePort, runKubectl } from "../test/cluster/controlPlane.ts";
import { RealNode } from "../test/cluster/node/realNode.ts";
import { OperatorManager } from "../operator/manager.ts";
import { loadConfig } from "../operator/runtime/config.ts";
import { caFromSecret, newSourceSecret } from "../operator/offsiteServer/certificates.ts";

const ROOT = resolve(import.meta.dirname, "..");
const CLI = join(ROOT, "agent", "main.mjs");
const DEMO_NAMESPACE = "offsite-demo";
const DEMO_SERVER = "vault"; // crds/examples/offsiteserver.yaml
const DEMO_SITE = "demo-site";
const DEMO_SOURCE = "demo-source";

const USAGE = `usage: npm start [-- --kubeconfig PATH] [--node real|kwok] [--exit]
  --kubeconfig PATH  use this cluster instead of starting a local control plane
  --node real|kwok   the local plane's node: real (default where it can run: root on
                     Linux) runs pods for real; kwok simulates them
  --exit             stop after setting up (the local control plane is stopped too)`;

type Kubectl = (args: string[], input?: string) => Promise<{ code: number; stdout: string; stderr: string }>;

async function main(): Promise<void> {
  let args;
  try {
    args = parseArgs({
      options: {
        kubeconfig: { type: "string" },
        node: { type: "string" },
        exit: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    }).values;
    if (args.node !== undefined && args.node !== "real" && args.node !== "kwok")
      throw new Error(`--node must be real or kwok, not '${args.node}'`);
    if (args.node !== undefined && args.kubeconfig)
      throw new Error("--node chooses the local plane's node; it does not go with --kubeconfig");
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
    const node = chooseNode(args.node);
    console.log(
      node === "real"
        ? "Starting a local Kubernetes control plane and a real node (kubelet, containerd, kube-proxy, CoreDNS)..."
        : "Starting a local Kubernetes control plane (etcd, kube-apiserver, controllers, kwok)...",
    );
    plane = await ControlPlane.start({
      controllers: true,
      node,
      ...(node === "real" ? { realNode: { volumes: 4 } } : {}),
    });
    kubeconfigPath = join(stateDir, "kubeconfig");
    writeFileSync(kubeconfigPath, plane.kubeconfigYaml(), { mode: 0o600 });
  }
  const realNode = plane?.node;

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

    const kubectl: Kubectl = (a, input) => runKubectl(kubeconfigPath, a, input);
    const namespace = await kubectl(["create", "namespace", DEMO_NAMESPACE]);
    if (namespace.code !== 0 && !namespace.stderr.includes("AlreadyExists"))
      throw new Error(namespace.stderr);
    // The operator runs in this process. On the local plane it is alone, so it skips leader
    // election; on a given cluster it campaigns like any replica and stands by if another
    // holds the Lease. Its JSON logs go to a file so they do not drown this terminal. On the
    // real node its receivers run the agent image built here (imported, never pulled).
    const operatorLog = join(stateDir, "operator.log");
    const config = loadConfig(
      [
        "--metrics-address",
        `127.0.0.1:${await freePort()}`,
        ...(realNode ? ["--agent-image", realNode.images.agent.ref] : []),
        // The injection webhook on loopback, where our own API server (a host process) calls
        // it; a given cluster's API server cannot reach this host, so there it is off.
        ...(plane ? await loopbackWebhook() : ["--webhook-address", "off"]),
      ],
      { OFFSITE_NAMESPACE: DEMO_NAMESPACE, OFFSITE_LEADER_ELECTION: plane ? "false" : "true" },
    );
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
    // Give the operator a moment to bring the simplest server up before showing the list
    // (on the real node its receiver pod starts for real: seconds, not milliseconds).
    const ready = await waitDemoServerReady(kubectl, realNode ? 180_000 : 30_000);
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
        "not acted on yet.",
      ].join("\n"),
    );
    if (!realNode) console.log("Under kwok, pods are simulated: no receiver process runs.");
    else if (!ready)
      console.log(
        `\nOffsiteServer ${DEMO_SERVER} is not Ready yet: kubectl describe osrv ${DEMO_SERVER} -n ${DEMO_NAMESPACE}` +
          ` and kubectl get pods -n ${DEMO_NAMESPACE} say why.`,
      );
    else console.log(await pushInstructions(kubectl, stateDir));
    if (args.exit) return stop(0);
    if (plane) console.log("\nThe control plane runs until Ctrl-C.");
    else return;
    await new Promise(() => undefined);
  } catch (error) {
    console.error(`npm start failed: ${(error as Error).message}`);
    await stop(1);
  }
}

/** The local plane's node: the real one where it can run, unless kwok is asked for. */
function chooseNode(asked: "real" | "kwok" | undefined): "real" | "kwok" {
  const unavailable = RealNode.unsupportedReason();
  if (asked === "real" && unavailable) {
    console.error(`npm start: the real node cannot run here: ${unavailable}`);
    process.exit(1);
  }
  if (asked) return asked;
  if (unavailable) console.log(`The real node cannot run here (${unavailable}); kwok simulates pods.`);
  return unavailable ? "kwok" : "real";
}

async function waitDemoServerReady(kubectl: Kubectl, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  do {
    const ready = await kubectl([
      "get",
      "osrv",
      DEMO_SERVER,
      "-n",
      DEMO_NAMESPACE,
      "-o",
      'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
    ]);
    if (ready.stdout === "True") return true;
    await new Promise((resolve) => setTimeout(resolve, 500));
  } while (Date.now() < deadline);
  return false;
}

/**
 * A client certificate for a demo source, issued by the demo server's CA (as the BackupJob
 * controller will issue one per source), and the commands that push to and restore from
 * the receiver through its ClusterIP (kube-proxy routes it from this machine too; the
 * receiver's certificate names that address).
 */
async function pushInstructions(kubectl: Kubectl, stateDir: string): Promise<string> {
  const get = async (args: string[]) => {
    const result = await kubectl(["-n", DEMO_NAMESPACE, "get", ...args]);
    if (result.code !== 0) throw new Error(`kubectl get ${args.join(" ")}: ${result.stderr}`);
    return result.stdout;
  };
  const ca = caFromSecret(JSON.parse(await get(["secret", `${DEMO_SERVER}-ca`, "-o", "json"])) as V1Secret);
  if (!ca) throw new Error(`Secret ${DEMO_SERVER}-ca holds no usable CA`);
  const server = JSON.parse(await get(["osrv", DEMO_SERVER, "-o", "json"])) as {
    metadata: { uid: string };
    spec: { port?: number };
  };
  const service = JSON.parse(await get(["service", DEMO_SERVER, "-o", "json"])) as {
    spec: { clusterIP: string; ports: { port: number }[] };
  };
  const secret = await newSourceSecret(
    { name: DEMO_SERVER, namespace: DEMO_NAMESPACE, uid: server.metadata.uid },
    ca,
    DEMO_SITE,
    DEMO_SOURCE,
    30 * 24 * 3600 * 1000,
  );
  const certs = join(stateDir, "certs", `${DEMO_SERVER}-${DEMO_SOURCE}`);
  mkdirSync(certs, { recursive: true });
  for (const [key, value] of Object.entries(secret.data ?? {}))
    writeFileSync(join(certs, key), Buffer.from(value, "base64"), { mode: 0o600 });
  const target = `${service.spec.clusterIP}:${service.spec.ports[0]!.port}`;
  return [
    "",
    `OffsiteServer ${DEMO_SERVER}'s receiver runs on the real node. Push to it from this machine,`,
    `through its Service's ClusterIP ${target}, as site ${DEMO_SITE}, source ${DEMO_SOURCE}:`,
    `  alias offsite="${process.execPath} ${CLI}"`,
    `  offsite push ./my-data --to ${target} --certs ${certs}`,
    `  offsite restore --from ${target} --certs ${certs} ./restored`,
    `The versions land on its volume under /data/${DEMO_SITE}/${DEMO_SOURCE}/:`,
    `  kubectl exec -n ${DEMO_NAMESPACE} ${DEMO_SERVER}-0 -- /nodejs/bin/node -e 'console.log(require("fs").readdirSync("/data/${DEMO_SITE}/${DEMO_SOURCE}/versions"))'`,
  ].join("\n");
}

await main();

/** Webhook flags for an operator running on this host: a free loopback port, by URL. */
async function loopbackWebhook(): Promise<string[]> {
  const port = await freePort();
  return ["--webhook-address", `127.0.0.1:${port}`, "--webhook-url", `https://127.0.0.1:${port}/mutate-pods`];
}
