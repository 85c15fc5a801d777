/**
 * The ReplicationPair controller (steady state): read the world — the two workloads, their
 * pods and agents, the pair's certificates — then make it so: the standby agent's Service,
 * the pair's Service selecting the primary's pods, each agent told its role (PUT
 * /v1/replication, level-based: an agent that plays it already changes nothing), and
 * status from the agents' reports. Failover (swapping the Service's selector when the
 * primary's heartbeat is lost, raising the epoch) is the next step; the epoch travels in
 * every role request from the start, and is 1 until then.
 *
 * Nothing is held between reconciles: the reports are read again every POLL_MS, which also
 * bounds how often lag and pending changes reach status (the runtime writes status only
 * when it changed).
 */
import { AppsV1Api, CoreV1Api, type V1LabelSelector, type V1Service } from "@kubernetes/client-node";
import {
  AGENT_CONTROL_COMMON_NAME,
  DEFAULT_REPLICATION_PORT,
  type ReplicationReport,
  type ReplicationRequest,
} from "../../contract/reports.ts";
import { GROUP, VERSION, type ReplicationPair } from "../../crds/definitions.ts";
import { replicationPairSpec, type ReplicationPairStatus } from "../../crds/schema/replicationPair.ts";
import { ensureAgentControlSecret } from "../agentControl/agentControlSecret.ts";
import {
  deleteReplication,
  fetchReplicationReport,
  putReplication,
  type ControlClientOptions,
} from "../agentControl/controlClient.ts";
import { AGENT_CONTROL_PORT } from "../agentControl/names.ts";
import { OperatorControlCredentials } from "../agentControl/operatorCredentials.ts";
import { classifySourcePods, listSourcePods } from "../backupJob/sourcePods.ts";
import { setCondition } from "../runtime/conditions.ts";
import { clusterSiteGuid } from "../backupJob/target.ts";
import type { ControllerContext, ControllerDefinition, ReconcileOutcome } from "../runtime/controller.ts";
import { errorMessage, isNotFound, readOptional } from "../runtime/kubeApi.ts";
import type { Logger } from "../runtime/logger.ts";
import { SECRETS, SERVICES } from "../runtime/resources.ts";
import { KIND, PLURAL, pairLabels, pairNames, pairOwnerReference } from "./names.ts";
import { ensurePairCredentials } from "./pairCredentials.ts";
import { roleRequests } from "./roleRequests.ts";
import { newlyBlocked, pairStatus, type SideFinding } from "./status.ts";

/** How often a pair is looked at (its agents' reports polled) without an event. */
export const POLL_MS = 5_000;
/** The epoch of every pair until failover raises it (the next issue). */
const FIRST_EPOCH = 1;

export function createReplicationPairController(): ControllerDefinition<ReplicationPair> {
  let credentials: OperatorControlCredentials | undefined;
  return {
    kind: KIND,
    group: GROUP,
    version: VERSION,
    plural: PLURAL,
    // Each labelled offsite.dev/replicationpair=<name>: the certificates Secret, the standby Service.
    watches: [{ resource: SECRETS }, { resource: SERVICES }],
    failurePhase: "Degraded",
    reconcile: (ctx, pair, log) => {
      credentials ??= new OperatorControlCredentials(() => ctx.operatorCa);
      return reconcileReplicationPair(ctx, pair, log, credentials);
    },
    publish: publishReplicationMetrics,
    forget: (ctx, namespace, name) => ctx.metrics.forgetReplicationPair(namespace, name),
  };
}

async function reconcileReplicationPair(
  ctx: ControllerContext,
  pair: ReplicationPair,
  log: Logger,
  operatorCredentials: OperatorControlCredentials,
): Promise<ReconcileOutcome<ReplicationPair>> {
  const now = ctx.now();
  const { namespace, name, generation, uid } = pair.metadata as {
    namespace: string;
    name: string;
    generation?: number;
    uid: string;
  };
  const parsed = replicationPairSpec.safeParse(pair.spec);
  if (!parsed.success) {
    const message = `The spec is invalid: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}. Fix the ReplicationPair; nothing replicates.`;
    return {
      status: {
        ...pair.status,
        phase: "Pending",
        observedGeneration: generation ?? 0,
        conditions: setCondition(
          pair.status?.conditions,
          { type: "Ready", status: "False", reason: "InvalidSpec", message },
          generation,
          now,
        ),
      },
    };
  }
  const spec = parsed.data;
  const names = pairNames(name);

  // Read the world.
  await ensureAgentControlSecret(ctx, namespace);
  const site = await clusterSiteGuid(ctx);
  const pairGuid = uid;
  const credentials = await ensurePairCredentials(ctx, { name, namespace, uid }, site, pairGuid);
  const primarySelector = await workloadSelector(ctx, namespace, spec.primary);
  const standbySelector = await workloadSelector(ctx, namespace, spec.standby);

  // The standby agent's Service, and the pair's Service pointing at the primary.
  if (standbySelector.selector)
    await ctx.applier.apply(standbyService(pair, names.standbyService, standbySelector.selector));
  let serviceProblem: string | undefined;
  if (primarySelector.selector?.matchLabels) {
    serviceProblem = await pointServiceAt(
      ctx,
      namespace,
      spec.service.name,
      primarySelector.selector.matchLabels,
    );
  }

  // Tell each agent its role, and read back what it does.
  const requests = roleRequests({
    spec,
    pair: name,
    namespace,
    site,
    pairGuid,
    epoch: FIRST_EPOCH,
    standbyService: names.standbyService,
    credentials,
  });
  const control = await controlOptions(operatorCredentials);
  const standby = await side(
    ctx,
    namespace,
    standbySelector,
    spec.standby.containerName,
    requests.standby,
    control,
    log,
  );
  const primary = spec.paused
    ? await side(ctx, namespace, primarySelector, spec.primary.containerName, undefined, control, log)
    : await side(ctx, namespace, primarySelector, spec.primary.containerName, requests.primary, control, log);

  const status = pairStatus(pair.status, {
    spec,
    generation,
    now,
    primary,
    standby,
    ...(serviceProblem ? { serviceProblem } : {}),
  });
  const stopped = newlyBlocked(pair.status, status);
  if (stopped.length > 0) {
    const listed = stopped.slice(0, 5).map((file) => `${file.path} (${file.reason})`);
    // The recent list holds 20: the count says how many were stopped since the last status.
    const count = Math.max(stopped.length, (status.blockedFiles ?? 0) - (pair.status?.blockedFiles ?? 0));
    await ctx.events.record(
      pair,
      "Warning",
      "FilesStopped",
      `the content firewall kept ${count} file(s) from the standby: ${listed.join(", ")}` +
        `${count > listed.length ? ", ..." : ""}; they stay on the primary (status.recentBlocked lists them)`,
    );
  }
  // The session's bytes are not in status (they reset with every session): the metric only.
  const primaryReport = "report" in primary ? primary.report : undefined;
  if (primaryReport) ctx.metrics.replicationBytesSent.set({ namespace, name }, primaryReport.bytesSent);
  const renewIn = credentials.renewAt.getTime() - now.getTime();
  return { status, requeueAfterMs: Math.max(1000, Math.min(POLL_MS, renewIn)) };
}

type SelectorLookup = { selector: V1LabelSelector } | { problem: { reason: string; message: string } };

async function workloadSelector(
  ctx: ControllerContext,
  namespace: string,
  workload: { kind: "Deployment" | "StatefulSet"; name: string },
): Promise<SelectorLookup & { selector?: V1LabelSelector }> {
  const apps = ctx.kc.makeApiClient(AppsV1Api);
  const found =
    workload.kind === "StatefulSet"
      ? await readOptional(apps.readNamespacedStatefulSet({ name: workload.name, namespace }))
      : await readOptional(apps.readNamespacedDeployment({ name: workload.name, namespace }));
  const selector = found?.spec?.selector;
  if (!found || !selector)
    return {
      problem: {
        reason: "WorkloadNotFound",
        message: `${workload.kind} ${namespace}/${workload.name} does not exist; create it, or fix the pair's workload name`,
      },
    };
  return { selector };
}

/** Finds the side's agent, tells it its role (none when `request` is absent: paused, so it stops), reads its report. */
async function side(
  ctx: ControllerContext,
  namespace: string,
  lookup: SelectorLookup,
  containerName: string,
  request: ReplicationRequest | undefined,
  control: ControlClientOptions,
  log: Logger,
): Promise<SideFinding> {
  if ("problem" in lookup) return { problem: lookup.problem };
  const pods = classifySourcePods(
    await listSourcePods(ctx, namespace, lookup.selector as Parameters<typeof listSourcePods>[2]),
    containerName,
  );
  const agent = pods.agents[0];
  if (!agent) return { pods };
  const address = { host: agent.ip, port: AGENT_CONTROL_PORT };
  try {
    let report: ReplicationReport;
    if (request) {
      const answer = await putReplication(address, request, control);
      if (answer.restarted)
        log.info({ pod: agent.name, role: request.role }, "told the agent its replication role");
      report = answer.report;
      if (!answer.restarted) report = await fetchReplicationReport(address, control);
    } else {
      // Paused: the primary's agent stops its role (changes wait on the primary's tree; the
      // catch-up at the next session finds them).
      await deleteReplication(address, control);
      report = await fetchReplicationReport(address, control);
    }
    return { pods, report };
  } catch (error) {
    return { pods, unreachable: errorMessage(error) };
  }
}

async function controlOptions(credentials: OperatorControlCredentials): Promise<ControlClientOptions> {
  const current = await credentials.get();
  return {
    operatorCredentials: { cert: current.cert, key: current.key },
    caPem: current.ca,
    expectCommonName: AGENT_CONTROL_COMMON_NAME,
    connectTimeoutMs: 3000,
  };
}

function standbyService(pair: ReplicationPair, serviceName: string, selector: V1LabelSelector): V1Service {
  const { name, namespace, uid } = pair.metadata as { name: string; namespace: string; uid: string };
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: {
      name: serviceName,
      namespace,
      labels: pairLabels(name),
      ownerReferences: [pairOwnerReference({ name, uid })],
    },
    spec: {
      selector: selector.matchLabels ?? {},
      ports: [
        {
          name: "replication",
          port: DEFAULT_REPLICATION_PORT,
          targetPort: DEFAULT_REPLICATION_PORT,
          protocol: "TCP",
        },
      ],
    },
  };
}

/**
 * The pair's Service selects the primary's pods: the operator owns its selector (applied as
 * the only field it sets), the ports and the rest stay the user's. A missing Service is
 * reported, not created: its ports are the application's to say.
 */
async function pointServiceAt(
  ctx: ControllerContext,
  namespace: string,
  serviceName: string,
  selector: Record<string, string>,
): Promise<string | undefined> {
  const core = ctx.kc.makeApiClient(CoreV1Api);
  try {
    await core.readNamespacedService({ name: serviceName, namespace });
  } catch (error) {
    if (isNotFound(error))
      return `Service ${namespace}/${serviceName} (spec.service.name) does not exist; create it with the application's ports`;
    throw error;
  }
  await ctx.applier.apply({
    apiVersion: "v1",
    kind: "Service",
    metadata: { name: serviceName, namespace },
    spec: { selector },
  });
  return undefined;
}

function publishReplicationMetrics(
  ctx: ControllerContext,
  pair: ReplicationPair,
  status: ReplicationPairStatus,
): void {
  const labels = { namespace: pair.metadata.namespace!, name: pair.metadata.name! };
  ctx.metrics.replicationPending.set(labels, status.pendingChanges ?? 0);
  ctx.metrics.replicationFirewallStopped.set(labels, status.blockedFiles ?? 0);
  ctx.metrics.replicationInSync.set(labels, status.phase === "InSync" ? 1 : 0);
  if (status.lagSeconds !== undefined) ctx.metrics.replicationLag.observe(labels, Number(status.lagSeconds));
}
