/**
 * The BackupJob controller: its registration with the runtime, and its reconcile — read
 * the world (target, certificates, the source's pods), decide from status whether a run
 * is due or in flight, take the run one step (choose its agent, start its mover pod, open
 * or re-attach its agent stream, fold in the result), and return the status.
 *
 * Level-based: the run lives in status (runs.ts), and each step that the next one depends
 * on is written before that step acts — the job id before any request, the chosen agent
 * before the request goes to it — so a reconcile interrupted anywhere (an operator
 * restart, a lost Lease) is continued by the next one, which asks the same agent for the
 * same job id and gets the same run. The only thing held between reconciles is the open
 * stream of each attempt (attempts.ts), which a new process opens again.
 *
 * While a run is in flight the job is reconciled every RUNNING_POLL_MS, which bounds how
 * often progress reaches status (the runtime writes status only when it changed).
 */
import { CoreV1Api, type V1Pod } from "@kubernetes/client-node";
import { GROUP, VERSION, type BackupJob } from "../../crds/definitions.ts";
import { durationToMs } from "../../contract/units.ts";
import { backupJobSpec, type BackupJobSpec, type BackupJobStatus } from "../../crds/schema/backupJob.ts";
import type { JobResult } from "../../contract/reports.ts";
import { ensureAgentControlSecret } from "../agentControl/agentControlSecret.ts";
import { AGENT_CONTROL_PORT } from "../agentControl/names.ts";
import { OperatorControlCredentials } from "../agentControl/operatorCredentials.ts";
import type { ControllerContext, ControllerDefinition, ReconcileOutcome } from "../runtime/controller.ts";
import { isNotFound } from "../runtime/kubeApi.ts";
import type { Logger } from "../runtime/logger.ts";
import { PODS, SECRETS } from "../runtime/resources.ts";
import { AttemptTracker, MAX_CONNECTION_FAILURES, type AttemptView, type CallAgent } from "./attempts.ts";
import { jobRequestFor, runPath } from "./jobRequest.ts";
import { CLAIM_MOUNT_PATH, RUN_ANNOTATION, desiredMoverPod } from "./moverPod.ts";
import { KIND, PLURAL, backupJobNames } from "./names.ts";
import {
  deadlineLeftMs,
  failAttempt,
  failureOfCode,
  finishRun,
  isWaitingToRetry,
  nextAttempt,
  startRun,
  withHistory,
  type AttemptFailure,
  type RunSummary,
} from "./runs.ts";
import { dueRun, nextScheduleTime, scheduleProblem } from "./schedule.ts";
import { ensureSourceCredentials, type SourceCredentials } from "./sourceCertificate.ts";
import {
  claimBehind,
  classifySourcePods,
  listSourcePods,
  selectorQuery,
  type SourcePods,
} from "./sourcePods.ts";
import { invalidSpecStatus, withConditions } from "./status.ts";
import { clusterSiteGuid, resolveTarget, type TargetResolution } from "./target.ts";

/** How often a job with a run in flight is looked at (and progress may reach status). */
export const RUNNING_POLL_MS = 2_000;
/** The next step of a run that was just written to status. */
const NEXT_STEP_MS = 200;
/** An idle job is looked at this often anyway (pods come and go; no pod watch per job). */
const IDLE_POLL_MS = 30_000;
/** Progress in status is refreshed at most this often. */
const PROGRESS_INTERVAL_MS = 5_000;
/** A mover pod that is not Ready after this long fails the attempt. */
const MOVER_START_TIMEOUT_MS = 5 * 60_000;
/** The agent reports its own deadline; the operator gives up this much later. */
const DEADLINE_GRACE_MS = 30_000;

export function createBackupJobController(callAgent: CallAgent): ControllerDefinition<BackupJob> {
  const attempts = new AttemptTracker(callAgent);
  let credentials: OperatorControlCredentials | undefined;
  return {
    kind: KIND,
    group: GROUP,
    version: VERSION,
    plural: PLURAL,
    // Each labelled offsite.dev/backupjob=<name>: the source Secret and the mover pod.
    watches: [{ resource: SECRETS }, { resource: PODS }],
    failurePhase: "Failed",
    reconcile: (ctx, job, log) => {
      credentials ??= new OperatorControlCredentials(() => ctx.operatorCa);
      return reconcileBackupJob(ctx, job, log, attempts, credentials);
    },
    publish: publishBackupMetrics,
    forget: (ctx, namespace, name) => ctx.metrics.forgetBackupJob(namespace, name),
  };
}

interface World {
  spec: BackupJobSpec;
  site: string;
  source: string;
  resolution: TargetResolution;
  credentials?: SourceCredentials;
  pods?: SourcePods;
  rawPods: V1Pod[];
}

async function reconcileBackupJob(
  ctx: ControllerContext,
  job: BackupJob,
  log: Logger,
  attempts: AttemptTracker,
  operatorCredentials: OperatorControlCredentials,
): Promise<ReconcileOutcome<BackupJob>> {
  const now = ctx.now();
  const { namespace, name, generation } = job.metadata as {
    namespace: string;
    name: string;
    generation?: number;
  };
  const parsed = backupJobSpec.safeParse(job.spec);
  if (!parsed.success) {
    const message = `The spec is invalid: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}. Fix the BackupJob; nothing was run.`;
    return { status: invalidSpecStatus(job.status, "InvalidSpec", message, generation, now) };
  }
  const spec = parsed.data;
  const badSchedule = scheduleProblem(spec);
  if (badSchedule)
    return {
      status: invalidSpecStatus(
        job.status,
        "InvalidSchedule",
        `${badSchedule}; fix spec.schedule or spec.timeZone`,
        generation,
        now,
      ),
    };

  // Read the world.
  const site = spec.siteGUID ?? (await clusterSiteGuid(ctx));
  const source = spec.source.guid ?? job.metadata.uid!;
  const renewals: Date[] = [await ensureAgentControlSecret(ctx, namespace)];
  const resolution = await resolveTarget(ctx, job, spec, source);
  const world: World = { spec, site, source, resolution, rawPods: [] };
  if ("target" in resolution) {
    world.credentials = await ensureSourceCredentials(ctx, job, resolution.target, site, source);
    if (world.credentials.renewAt) renewals.push(world.credentials.renewAt);
  }
  if (spec.source.podSelector) {
    world.rawPods = await listSourcePods(ctx, namespace, spec.source.podSelector);
    world.pods = classifySourcePods(world.rawPods, spec.source.containerName);
  }

  let status: BackupJobStatus = {
    ...job.status,
    siteGUID: site,
    sourceGUID: source,
    ...("target" in resolution ? { server: resolution.target.display } : {}),
    observedGeneration: generation ?? 0,
  };
  const events: { type: "Normal" | "Warning"; reason: string; message: string }[] = [];
  let requeueAfterMs = IDLE_POLL_MS;

  const inFlight = status.lastRun?.result === "Running" ? status.lastRun : undefined;
  if (!inFlight) {
    const due = dueRun(spec, status, new Date(job.metadata.creationTimestamp ?? now), now);
    if (due) {
      const run = startRun(due, spec, job.metadata.uid!, now);
      status = {
        ...status,
        lastRun: run,
        ...(due.slot ? { lastScheduleTime: due.slot.toISOString() } : {}),
        ...(due.trigger === "Manual" ? { lastManualTrigger: spec.manualTrigger! } : {}),
      };
      delete status.progress;
      events.push({
        type: "Normal",
        reason: "RunStarted",
        message: `${spec.mode} run ${run.id} started (${due.trigger.toLowerCase()})`,
      });
      requeueAfterMs = NEXT_STEP_MS;
    }
  } else {
    const step = await stepRun(ctx, job, world, inFlight, attempts, operatorCredentials, log);
    status = { ...status, lastRun: step.run };
    requeueAfterMs = step.requeueAfterMs;
    if (step.view?.progress) status = withProgress(status, step.view, now);
    if (step.run.result !== "Running") {
      status = finished(ctx, job, spec, status, step.run, step.result, events);
    } else if (step.run.nextAttemptTime && step.run.nextAttemptTime !== inFlight.nextAttemptTime) {
      events.push({
        type: "Warning",
        reason: "AttemptFailed",
        message: `${step.run.reason ?? "RunFailed"}: ${step.run.message ?? "attempt failed"}`,
      });
    }
  }
  if (status.lastRun?.result !== "Running") delete status.progress;
  // Only once the finished run is in status: were the mover gone before, a reconcile that
  // missed the result would start the same job id on a new mover, which knows nothing of it.
  if (!inFlight && status.lastRun?.result !== "Running") await deleteMoverPod(ctx, namespace, name);

  const next = nextScheduleTime(spec, now);
  if (next) status.nextScheduleTime = next.toISOString();
  else delete status.nextScheduleTime;
  status = withConditions(status, {
    spec,
    generation,
    now,
    ...("problem" in resolution ? { targetProblem: resolution.problem } : {}),
    ...("target" in resolution && resolution.target.notReady
      ? { targetNotReady: resolution.target.notReady }
      : {}),
    ...(world.pods ? { pods: world.pods, selector: selectorQuery(spec.source.podSelector!) } : {}),
  });

  for (const event of events) await ctx.events.record(job, event.type, event.reason, event.message);
  if (status.lastRun?.result !== "Running") {
    for (const at of [next, ...renewals]) {
      if (at)
        requeueAfterMs = Math.min(requeueAfterMs, Math.max(NEXT_STEP_MS, at.getTime() - now.getTime() + 50));
    }
  }
  return { status, requeueAfterMs };
}

interface Step {
  run: RunSummary;
  requeueAfterMs: number;
  view?: AttemptView;
  result?: JobResult;
}

/** One step of the run in flight. */
async function stepRun(
  ctx: ControllerContext,
  job: BackupJob,
  world: World,
  run: RunSummary,
  attempts: AttemptTracker,
  operatorCredentials: OperatorControlCredentials,
  log: Logger,
): Promise<Step> {
  const { spec, resolution } = world;
  const now = ctx.now();
  const uid = job.metadata.uid!;
  const fail = (failure: AttemptFailure & { final?: boolean }): Step => {
    if (run.jobId) attempts.forget(run.jobId);
    log.info({ run: run.id, attempt: run.attempt, reason: failure.reason }, failure.message);
    const failed = failAttempt(run, failure, spec.backoffLimit, now);
    return {
      run: failed,
      requeueAfterMs: failed.nextAttemptTime
        ? Math.max(NEXT_STEP_MS, new Date(failed.nextAttemptTime).getTime() - now.getTime())
        : NEXT_STEP_MS,
    };
  };

  if (isWaitingToRetry(run, now))
    return { run, requeueAfterMs: new Date(run.nextAttemptTime!).getTime() - now.getTime() + 50 };
  if (run.nextAttemptTime) return { run: nextAttempt(run, uid), requeueAfterMs: NEXT_STEP_MS };

  const deadlineLeft = deadlineLeftMs(run, durationToMs(spec.activeDeadline), now);
  if (deadlineLeft + DEADLINE_GRACE_MS <= 0 || (deadlineLeft <= 0 && !run.agent))
    return fail({
      reason: "DeadlineExceeded",
      message: `the run did not finish within spec.activeDeadline (${spec.activeDeadline}); the next run resumes what was sent`,
      final: true,
    });
  if ("problem" in resolution) return fail(resolution.problem);
  const target = resolution.target;

  const needsMover = spec.source.persistentVolumeClaim !== undefined || spec.mode === "Restore";
  if (!run.agent) {
    if (needsMover)
      return {
        run: { ...run, agent: backupJobNames(job.metadata.name!).moverPod },
        requeueAfterMs: NEXT_STEP_MS,
      };
    const agent = world.pods!.agents[0];
    if (!agent) {
      const pods = world.pods!;
      return fail(
        pods.total === 0
          ? {
              reason: "NoSourcePods",
              message: `no pod matches spec.source.podSelector (${selectorQuery(spec.source.podSelector!)})`,
            }
          : pods.missing.length > 0
            ? {
                reason: "AgentMissing",
                message: `no selected pod runs the agent sidecar: ${pods.missing.map((p) => `${p.name} (${p.why})`).join("; ")}`,
              }
            : {
                reason: "AgentStarting",
                message: `the agent sidecar of ${pods.starting.join(", ")} is not running yet`,
              },
      );
    }
    return { run: { ...run, agent: agent.name }, requeueAfterMs: NEXT_STEP_MS };
  }

  // The agent is chosen: find its address.
  let host: string | undefined;
  if (needsMover) {
    const mover = await ensureMoverPod(ctx, job, world, run);
    if ("failure" in mover) return fail(mover.failure);
    if (!mover.ip) {
      const waited = now.getTime() - new Date(run.startTime).getTime();
      if (waited > MOVER_START_TIMEOUT_MS && (run.attempt ?? 1) === 1)
        return fail({
          reason: "MoverNotReady",
          message: `the mover pod ${run.agent} is not Ready after ${MOVER_START_TIMEOUT_MS / 60_000} min: ${mover.why}`,
        });
      return { run, requeueAfterMs: RUNNING_POLL_MS };
    }
    host = mover.ip;
  } else {
    const agent = world.pods!.agents.find((a) => a.name === run.agent);
    if (!agent) {
      if (world.pods!.starting.includes(run.agent)) return { run, requeueAfterMs: RUNNING_POLL_MS };
      return fail({
        reason: "AgentGone",
        message: `the pod ${run.agent} running the job was deleted or stopped mid-run; the next attempt runs on another pod and resumes`,
      });
    }
    host = agent.ip;
  }

  const view = await attempts.ensure(run.jobId!, run.agent, async () => ({
    address: { host: host, port: AGENT_CONTROL_PORT },
    credentials: await operatorCredentials.get(),
    request: jobRequestFor({
      spec,
      run,
      site: world.site,
      source: world.source,
      path: runPath(spec),
      target,
      credentials: world.credentials!,
      deadlineMs: deadlineLeft,
    }),
  }));
  if (view.result) {
    attempts.forget(run.jobId!);
    if (view.result.outcome === "failed") return fail(failureOfCode(view.result.code, view.result.message));
    return { run: finishRun(run, view.result, now), requeueAfterMs: NEXT_STEP_MS, result: view.result };
  }
  if (view.failures >= MAX_CONNECTION_FAILURES)
    return fail({
      reason: "AgentUnreachable",
      message: `the agent in ${run.agent} cannot be reached at ${host}:${AGENT_CONTROL_PORT} (${view.error}); check that its control Secret exists and the pod's network works`,
    });
  return { run, requeueAfterMs: RUNNING_POLL_MS, view };
}

/** The mover pod of this run, created when absent; its IP once it is Ready. */
async function ensureMoverPod(
  ctx: ControllerContext,
  job: BackupJob,
  world: World,
  run: RunSummary,
): Promise<{ ip?: string; why: string } | { failure: AttemptFailure & { final?: boolean } }> {
  const { spec } = world;
  const namespace = job.metadata.namespace!;
  const name = backupJobNames(job.metadata.name!).moverPod;
  const existing = ctx.cached<V1Pod>(PODS, namespace, name);
  if (existing && existing.metadata?.annotations?.[RUN_ANNOTATION] !== run.id) {
    await deleteMoverPod(ctx, namespace, job.metadata.name!);
    return { why: "the previous run's mover pod is being removed" };
  }
  if (existing) {
    const ready = existing.status?.conditions?.find((c) => c.type === "Ready")?.status === "True";
    if (ready && existing.status?.podIP) return { ip: existing.status.podIP, why: "Ready" };
    const waiting = existing.status?.containerStatuses?.[0]?.state?.waiting;
    return {
      why: waiting
        ? `${waiting.reason}: ${waiting.message ?? ""}`
        : `phase ${existing.status?.phase ?? "Pending"}`,
    };
  }
  const writable = spec.mode === "Restore";
  let claim: { claimName: string; mountPath: string; subPath?: string; nodeName?: string } | undefined;
  if (spec.source.persistentVolumeClaim) {
    const claimName = spec.source.persistentVolumeClaim.claimName;
    const nodeName = await nodeUsingClaim(ctx, namespace, claimName);
    claim = { claimName, mountPath: CLAIM_MOUNT_PATH, ...(nodeName ? { nodeName } : {}) };
  } else {
    for (const pod of world.rawPods) {
      claim = claimBehind(pod, runPath(spec));
      if (claim) break;
    }
    if (!claim)
      return {
        failure: {
          reason: "RestoreNeedsClaim",
          message: `${runPath(spec)} is on no PersistentVolumeClaim of the selected pods (an emptyDir or the image's files); a restore writes through the claim from a mover pod`,
          final: true,
        },
      };
  }
  await ctx.applier.apply(
    desiredMoverPod({
      job: { name: job.metadata.name!, namespace, uid: job.metadata.uid! },
      runId: run.id,
      image: ctx.defaultImage,
      writable,
      ...claim,
    }),
  );
  return { why: "created" };
}

/** The node where a pod has the claim mounted (a ReadWriteOnce claim is attached there). */
async function nodeUsingClaim(
  ctx: ControllerContext,
  namespace: string,
  claimName: string,
): Promise<string | undefined> {
  const pods = await ctx.kc.makeApiClient(CoreV1Api).listNamespacedPod({ namespace });
  const user = pods.items.find(
    (p) =>
      p.spec?.nodeName &&
      p.status?.phase === "Running" &&
      (p.spec.volumes ?? []).some((v) => v.persistentVolumeClaim?.claimName === claimName),
  );
  return user?.spec?.nodeName;
}

async function deleteMoverPod(ctx: ControllerContext, namespace: string, jobName: string): Promise<void> {
  const name = backupJobNames(jobName).moverPod;
  if (!ctx.cached<V1Pod>(PODS, namespace, name)) return;
  try {
    await ctx.kc.makeApiClient(CoreV1Api).deleteNamespacedPod({ name, namespace, gracePeriodSeconds: 5 });
  } catch (error) {
    if (!isNotFound(error)) throw error;
  }
}

/** Progress from the agent's latest line, refreshed in status at most every PROGRESS_INTERVAL_MS. */
function withProgress(status: BackupJobStatus, view: AttemptView, now: Date): BackupJobStatus {
  const previous = status.progress?.updatedAt ? new Date(status.progress.updatedAt).getTime() : 0;
  if (now.getTime() - previous < PROGRESS_INTERVAL_MS) return status;
  const p = view.progress!;
  const phases = {
    scanning: "Scanning",
    sending: "Sending",
    committing: "Committing",
    restoring: "Restoring",
  } as const;
  return {
    ...status,
    progress: {
      phase: phases[p.phase],
      filesDone: p.filesDone,
      filesTotal: p.filesTotal,
      bytesDone: p.bytesDone,
      bytesTotal: p.bytesTotal,
      percent: p.bytesTotal > 0 ? Math.min(100, Math.floor((100 * p.bytesDone) / p.bytesTotal)) : 0,
      ...(view.bytesPerSecond !== undefined ? { bytesPerSecond: view.bytesPerSecond } : {}),
      ...(view.etaSeconds !== undefined ? { etaSeconds: view.etaSeconds } : {}),
      updatedAt: now.toISOString(),
    },
  };
}

/** A run that ended: history, the last success, compare's findings, Events and metrics. */
function finished(
  ctx: ControllerContext,
  job: BackupJob,
  spec: BackupJobSpec,
  status: BackupJobStatus,
  run: RunSummary,
  result: JobResult | undefined,
  events: { type: "Normal" | "Warning"; reason: string; message: string }[],
): BackupJobStatus {
  const { namespace, name } = job.metadata as { namespace: string; name: string };
  const labels = { namespace, name };
  const next: BackupJobStatus = {
    ...status,
    lastRun: run,
    history: withHistory(status.history, run, spec.historyLimit),
  };
  if (spec.historyLimit === 0) delete next.history;
  ctx.metrics.backupRunsTotal.inc({
    ...labels,
    mode: run.mode,
    result: run.result === "Succeeded" ? "succeeded" : "failed",
  });
  if (run.durationSeconds !== undefined) ctx.metrics.backupRunDuration.observe(labels, run.durationSeconds);
  if (run.result === "Failed") {
    events.push({
      type: "Warning",
      reason: "RunFailed",
      message: `${run.mode} run ${run.id} failed (${run.reason}): ${run.message}`,
    });
    return next;
  }
  next.lastSuccessfulRun = run;
  next.lastSuccessfulTime = run.completionTime!;
  if (run.mode === "Backup" && run.version) next.latestVersion = run.version;
  ctx.metrics.backupBytesSentTotal.inc(labels, run.bytesSent ?? 0);
  ctx.metrics.backupFirewallStoppedTotal.inc(labels, run.filesStopped ?? 0);
  ctx.metrics.backupLastSuccess.set(labels, new Date(run.completionTime!).getTime() / 1000);
  if (result?.compare && run.mode === "Compare") {
    const c = result.compare;
    next.compareResult = {
      version: result.version ?? "",
      matched: c.match,
      added: c.added,
      changed: c.changed,
      missing: c.missing,
      metadata: c.metadata,
      differences: c.first.slice(0, 20),
    };
    const summary = c.match
      ? `the source matches version ${result.version}`
      : `the source differs from version ${result.version}: ${c.added} added, ${c.changed} changed, ${c.missing} missing, ${c.metadata} with other metadata`;
    events.push({ type: "Normal", reason: c.match ? "CompareMatched" : "CompareDiffers", message: summary });
  }
  events.push({ type: "Normal", reason: "RunSucceeded", message: runSummaryText(run) });
  return next;
}

function runSummaryText(run: RunSummary): string {
  const parts = [
    `${run.mode} run ${run.id} succeeded in ${run.durationSeconds ?? 0}s`,
    run.version ? `version ${run.version}` : undefined,
    run.filesChanged !== undefined ? `${run.filesChanged} files changed` : undefined,
    run.filesDeleted ? `${run.filesDeleted} deleted` : undefined,
    run.filesFiltered ? `${run.filesFiltered} filtered` : undefined,
    run.filesStopped ? `${run.filesStopped} stopped by the firewall` : undefined,
    run.bytesSent !== undefined ? `${run.bytesSent} bytes sent` : undefined,
    run.message,
  ];
  return parts.filter(Boolean).join(", ");
}

function publishBackupMetrics(ctx: ControllerContext, job: BackupJob, status: BackupJobStatus): void {
  const labels = { namespace: job.metadata.namespace!, name: job.metadata.name! };
  ctx.metrics.startBackupSeries(labels.namespace, labels.name, job.spec?.mode ?? "Backup");
  const ready = status.conditions?.find((c) => c.type === "Ready")?.status === "True";
  ctx.metrics.backupReady.set(labels, ready ? 1 : 0);
  ctx.metrics.backupRunning.set(labels, status.lastRun?.result === "Running" ? 1 : 0);
  // From status, not only when a run ends here: a restarted operator still exports it.
  if (status.lastSuccessfulTime)
    ctx.metrics.backupLastSuccess.set(labels, new Date(status.lastSuccessfulTime).getTime() / 1000);
}
