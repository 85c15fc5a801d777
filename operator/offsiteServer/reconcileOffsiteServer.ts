/**
 * The OffsiteServer controller: its registration with the runtime, and its reconcile —
 * read the world, compute what should exist (pure functions in desiredState,
 * certificates and status), apply it with server-side apply, and return the status. The
 * runtime (runtime/controllerRuntime.ts) writes that status, or Ready=False with the
 * error's reason and message when a step throws (a Service the API server refuses: 422,
 * `Invalid`), and keeps the finalizer, whose step here deletes the data claim only when
 * retainPolicy is Delete.
 *
 * Level-based and idempotent: nothing is remembered between runs; a run interrupted at
 * any point is finished by the next one, which applies the same objects under the same
 * names. The subtle point: the OffsiteServer comes from the reflector's cache, but its
 * Secrets are read from the API server — a cache that missed the CA Secret would make us
 * mint a second CA and re-sign every certificate. The receiver pod, which status only
 * reports on (Ready comes from its state: status.ts), is read from the cache.
 */
import {
  CoreV1Api,
  CustomObjectsApi,
  type V1PersistentVolumeClaim,
  type V1Pod,
  type V1Secret,
} from "@kubernetes/client-node";
import { durationToMs, sizeToBytes } from "../../contract/units.ts";
import { offsiteServerSpec, type OffsiteServerStatus } from "../../crds/schema/offsiteServer.ts";
import { GROUP, VERSION, type BackupJob, type OffsiteServer } from "../../crds/definitions.ts";
import { certificateNotAfter } from "../../pki/certificates.ts";
import { ensureAgentControlSecret } from "../agentControl/agentControlSecret.ts";
import { OperatorControlCredentials } from "../agentControl/operatorCredentials.ts";
import { PLURAL as BACKUP_JOB_PLURAL } from "../backupJob/names.ts";
import { clusterSiteGuid } from "../backupJob/target.ts";
import { findCondition, setCondition } from "../runtime/conditions.ts";
import type { ControllerContext, ControllerDefinition, ReconcileOutcome } from "../runtime/controller.ts";
import { ReconcileError, errorMessage, isNotFound, readOptional } from "../runtime/kubeApi.ts";
import type { Logger } from "../runtime/logger.ts";
import { PERSISTENT_VOLUME_CLAIMS, PODS, SECRETS, SERVICES, STATEFULSETS } from "../runtime/resources.ts";
import {
  caFromSecret,
  newCaSecret,
  newServingSecret,
  renewalDueAt,
  servingCertificateRenewal,
  tlsChecksum,
} from "./certificates.ts";
import {
  desiredDataClaim,
  desiredService,
  desiredStatefulSet,
  receiverControlPort,
  type ServerIdentity,
  type SpecProblem,
} from "./desiredState.ts";
import { KIND, PLURAL, RESTART_ANNOTATION, offsiteServerNames, serverHosts } from "./names.ts";
import { ReceiverPoller, pollablePodIp, type ReceiverPoll } from "./receiverPoll.ts";
import { expectedSources, needsDefaultSite } from "./sources.ts";
import { computeStatus } from "./status.ts";

const DAY_MS = 24 * 3600 * 1000;
/** Re-check servers that wait on something outside our watches (a load balancer address). */
const POLL_WHILE_WAITING_MS = 30_000;
/** A Ready receiver is asked for its check-ins this often (and at every reconcile). */
export const RECEIVER_POLL_MS = 30_000;
const SOURCE_STATES = ["Online", "Offline", "NeverCheckedIn", "Suspended"] as const;

/** The controller; it holds the operator's control client certificate (one per controller). */
export function createOffsiteServerController(): ControllerDefinition<OffsiteServer> {
  let credentials: OperatorControlCredentials | undefined;
  const poller = new ReceiverPoller();
  return {
    kind: KIND,
    group: GROUP,
    version: VERSION,
    plural: PLURAL,
    // Each labelled offsite.dev/offsiteserver=<name> (names.ts: offsiteServerLabels).
    watches: [
      { resource: STATEFULSETS },
      { resource: SERVICES },
      { resource: SECRETS },
      { resource: PERSISTENT_VOLUME_CLAIMS },
      // The receiver pod (template labels): its state is the Ready condition's evidence.
      { resource: PODS },
    ],
    errorReasons: ["DeleteClaimFailed"],
    failurePhase: "Degraded",
    reconcile: (ctx, server, log) => {
      credentials ??= new OperatorControlCredentials(() => ctx.operatorCa);
      return reconcileOffsiteServer(ctx, server, log, credentials, poller);
    },
    finalize: finalizeOffsiteServer,
    publish: publishServerMetrics,
    forget(ctx, namespace, name) {
      poller.forget(`${namespace}/${name}`);
      ctx.metrics.forgetServer(namespace, name);
      ctx.metrics.certificateExpiry.remove({ namespace, secret: offsiteServerNames(name).serverTlsSecret });
    },
  };
}

async function reconcileOffsiteServer(
  ctx: ControllerContext,
  server: OffsiteServer,
  log: Logger,
  operatorCredentials: OperatorControlCredentials,
  poller: ReceiverPoller,
): Promise<ReconcileOutcome<OffsiteServer>> {
  const { namespace, name } = server.metadata as { namespace: string; name: string };
  const core = ctx.kc.makeApiClient(CoreV1Api);
  const now = ctx.now();
  const names = offsiteServerNames(name);

  const parsed = offsiteServerSpec.safeParse(server.spec);
  if (!parsed.success) {
    // Slipped past the API server's schema (an older CRD, a direct etcd write): report, don't crash-loop.
    const message = `The spec is invalid: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}. Fix the OffsiteServer; nothing was changed.`;
    log.warn({ reason: "InvalidSpec" }, message);
    return {
      status: {
        ...server.status,
        phase: "Degraded",
        observedGeneration: server.metadata.generation ?? 0,
        conditions: setCondition(
          server.status?.conditions,
          { type: "Ready", status: "False", reason: "InvalidSpec", message },
          server.metadata.generation,
          now,
        ),
      },
    };
  }
  const spec = parsed.data;
  const identity: ServerIdentity = {
    name,
    namespace,
    uid: server.metadata.uid!,
    ...(server.metadata.annotations ? { annotations: server.metadata.annotations } : {}),
  };
  const problems: SpecProblem[] = [];

  // The Service first: its ClusterIP goes into the receiver's certificate, so sources (and
  // a person at a node) can also reach it by address, as `offsite push --to IP:PORT`.
  const service = await ctx.applier.apply(desiredService(identity, spec));

  // TLS: the server's CA, then its serving certificate.
  const readSecret = (secretName: string) =>
    readOptional(core.readNamespacedSecret({ name: secretName, namespace }));
  let ca = caFromSecret(await readSecret(names.caSecret));
  if (!ca) {
    const created = await newCaSecret(identity);
    await ctx.applier.apply(created.secret);
    ca = created.ca;
    await ctx.events.record(
      server,
      "Normal",
      "CertificateAuthorityCreated",
      `Created the CA in Secret ${names.caSecret}.`,
    );
  }
  const hosts = serverHosts(name, namespace, spec.service.externalAddress, service.spec?.clusterIP);
  const renewBeforeMs = durationToMs(spec.tls.renewBefore);
  let serving: V1Secret | undefined = await readSecret(names.serverTlsSecret);
  const renewal = servingCertificateRenewal(serving, ca, hosts, now, renewBeforeMs);
  if (renewal) {
    const validForMs = Math.max(durationToMs(spec.tls.certificateDuration), renewBeforeMs + DAY_MS);
    serving = await ctx.applier.apply(await newServingSecret(identity, ca, hosts, validForMs));
    await ctx.events.record(
      server,
      "Normal",
      "CertificateIssued",
      `Issued the receiver's certificate in Secret ${names.serverTlsSecret} (${renewal}).`,
    );
    log.info({ renewal }, "issued the receiver's serving certificate");
  }
  const notAfter = certificateNotAfter(Buffer.from(serving!.data!["tls.crt"]!, "base64").toString());
  // The receiver's control endpoint serves with the namespace's agent control Secret.
  const controlRenewal = await ensureAgentControlSecret(ctx, namespace);
  ctx.metrics.certificateExpiry.set({ namespace, secret: names.serverTlsSecret }, notAfter.getTime() / 1000);

  // Storage: our own claim (grown, never shrunk) or the user's existing one.
  let claim: V1PersistentVolumeClaim | undefined;
  if (spec.storage.existingClaim) {
    claim = await readOptional(
      core.readNamespacedPersistentVolumeClaim({ name: spec.storage.existingClaim, namespace }),
    );
    if (!claim) {
      problems.push({
        reason: "ExistingClaimNotFound",
        message: `storage.existingClaim ${spec.storage.existingClaim} does not exist in namespace ${namespace}; the receiver cannot start until it does.`,
      });
    }
  } else {
    const observed = await readOptional(
      core.readNamespacedPersistentVolumeClaim({ name: names.dataClaim, namespace }),
    );
    const decision = desiredDataClaim(identity, spec, observed);
    problems.push(...decision.problems);
    const before = observed?.spec?.resources?.requests?.storage;
    claim = await ctx.applier.apply(decision.claim!);
    const after = claim.spec?.resources?.requests?.storage;
    if (before && after && sizeToBytes(after) > sizeToBytes(before)) {
      await ctx.events.record(
        server,
        "Normal",
        "VolumeExpansionRequested",
        `Asked to grow ${names.dataClaim} from ${before} to ${after}.`,
      );
    }
  }

  const previousRestart = server.status?.restartedAt;
  const statefulSet = await ctx.applier.apply(
    desiredStatefulSet({
      server: identity,
      spec,
      defaultImage: ctx.defaultImage,
      tlsChecksum: tlsChecksum(serving),
    }),
  );
  const restartAt = identity.annotations?.[RESTART_ANNOTATION];
  if (restartAt && restartAt !== previousRestart) {
    await ctx.events.record(
      server,
      "Normal",
      "RestartRequested",
      `Rolling restart of the receiver (offsite.dev/restart-at=${restartAt}).`,
    );
  }

  let nodeAddress: string | undefined;
  if (spec.service.type === "NodePort" && !spec.service.externalAddress) {
    const nodes = await core.listNode({ limit: 1 });
    const addresses = nodes.items[0]?.status?.addresses ?? [];
    nodeAddress = (
      addresses.find((a) => a.type === "ExternalIP") ?? addresses.find((a) => a.type === "InternalIP")
    )?.address;
  }

  // From the cache: status only reports on the pod, and its next change queues a new run.
  const pod = ctx.cached<V1Pod>(PODS, namespace, names.pod);

  // Check-ins: ask a Ready receiver; status keeps the last report when it cannot answer.
  const podIp = spec.suspend ? undefined : pollablePodIp(pod);
  const controlAddress = podIp ? { host: podIp, port: receiverControlPort(spec) } : undefined;
  let receiverPoll: ReceiverPoll | undefined;
  let nextPollInMs = 24 * DAY_MS;
  if (controlAddress) {
    const polled = await poller.poll(
      `${namespace}/${name}`,
      pod?.metadata?.uid,
      controlAddress,
      async () => {
        const control = await operatorCredentials.get();
        return { cert: control.cert, key: control.key, caPem: ctx.operatorCa.certificatePem };
      },
      now.getTime(),
    );
    receiverPoll = polled.poll;
    nextPollInMs = polled.at + RECEIVER_POLL_MS - now.getTime();
    if (!receiverPoll.ok && findCondition(server.status?.conditions, "SourcesReported")?.status !== "False")
      log.warn({ reason: receiverPoll.reason }, `polling the receiver failed: ${receiverPoll.message}`);
  }
  const jobs = await listBackupJobs(ctx);
  const expected = expectedSources(
    { namespace, name },
    jobs,
    needsDefaultSite(jobs) ? await clusterSiteGuid(ctx) : undefined,
    now,
  );

  const status = computeStatus({
    name,
    namespace,
    generation: server.metadata.generation,
    annotations: identity.annotations,
    spec,
    previous: server.status,
    statefulSet,
    pod,
    service,
    claim,
    nodeAddress,
    certificateNotAfter: notAfter,
    problems,
    now,
    ...(receiverPoll ? { receiverPoll } : {}),
    ...(controlAddress ? { controlAddress: `${controlAddress.host}:${controlAddress.port}` } : {}),
    expectedSources: expected,
  });

  for (const problem of problems) {
    if (findCondition(server.status?.conditions, "Degraded")?.reason !== problem.reason) {
      await ctx.events.record(server, "Warning", problem.reason, problem.message);
    }
  }

  const renewInMs =
    Math.min(renewalDueAt(serving!, renewBeforeMs).getTime(), controlRenewal.getTime()) - now.getTime();
  const ready = findCondition(status.conditions, "Ready");
  const waiting = ready?.reason === "LoadBalancerPending" || ready?.reason === "EndpointUnknown";
  // setTimeout cannot wait longer than ~24.8 days; a later run re-arms the timer.
  return {
    status,
    requeueAfterMs: Math.min(
      Math.max(renewInMs, 1000),
      waiting ? POLL_WHILE_WAITING_MS : 24 * DAY_MS,
      Math.max(nextPollInMs, 1000),
    ),
  };
}

/** Every BackupJob of the cluster, from the API server: which of them push here is status.sources' business. */
async function listBackupJobs(ctx: ControllerContext): Promise<BackupJob[]> {
  const custom = ctx.kc.makeApiClient(CustomObjectsApi);
  const jobs: BackupJob[] = [];
  let _continue: string | undefined;
  do {
    const page = (await custom.listClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: BACKUP_JOB_PLURAL,
      limit: 500,
      ...(_continue ? { _continue } : {}),
    })) as { items: BackupJob[]; metadata?: { _continue?: string } };
    jobs.push(...page.items);
    _continue = page.metadata?._continue || undefined;
  } while (_continue);
  return jobs;
}

/** The finalize step: deletes the data claim only with retainPolicy Delete (and not the user's own). */
async function finalizeOffsiteServer(
  ctx: ControllerContext,
  server: OffsiteServer,
  log: Logger,
): Promise<string> {
  const { namespace, name } = server.metadata as { namespace: string; name: string };
  const claimName = offsiteServerNames(name).dataClaim;
  const deletesData = server.spec?.retainPolicy === "Delete" && !server.spec.storage?.existingClaim;
  if (deletesData) {
    try {
      await ctx.kc
        .makeApiClient(CoreV1Api)
        .deleteNamespacedPersistentVolumeClaim({ name: claimName, namespace });
      log.info({ claim: claimName }, "deleted the data claim (retainPolicy: Delete)");
    } catch (error) {
      if (!isNotFound(error))
        throw new ReconcileError(
          "DeleteClaimFailed",
          `deleting ${claimName} failed: ${errorMessage(error)}`,
          {
            cause: error,
          },
        );
    }
  } else {
    log.info(
      { claim: server.spec?.storage?.existingClaim ?? claimName },
      "kept the data volume (retainPolicy: Retain)",
    );
  }
  return deletesData
    ? `Deleted the data claim ${claimName} as retainPolicy is Delete.`
    : `Kept the data volume ${server.spec?.storage?.existingClaim ?? claimName} (retainPolicy: Retain); recreate the OffsiteServer with the same name to use it again.`;
}

function publishServerMetrics(
  ctx: ControllerContext,
  server: OffsiteServer,
  status: OffsiteServerStatus,
): void {
  const { namespace, name } = server.metadata as { namespace: string; name: string };
  const ready = findCondition(status.conditions, "Ready")?.status === "True";
  ctx.metrics.serverReady.set({ namespace, name }, ready ? 1 : 0);
  if (status.capacity?.totalBytes !== undefined)
    ctx.metrics.serverCapacityBytes.set({ namespace, name }, status.capacity.totalBytes);
  if (status.capacity?.usedBytes !== undefined)
    ctx.metrics.serverUsedBytes.set({ namespace, name }, status.capacity.usedBytes);
  for (const state of SOURCE_STATES) {
    ctx.metrics.serverSources.set(
      { namespace, name, state },
      (status.sources ?? []).filter((s) => s.state === state).length,
    );
  }
}
