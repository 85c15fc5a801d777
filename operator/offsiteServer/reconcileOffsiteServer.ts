/**
 * Reconciles one OffsiteServer: reads the world, computes what should exist (pure
 * functions in desiredState/certificates/status), applies the difference with
 * server-side apply, and writes status — every run, even when a step failed.
 *
 * Level-based and idempotent: nothing is remembered between runs; a run interrupted at
 * any point (the operator killed mid-reconcile) is finished by the next one, which
 * applies the same objects under the same names. Deletion goes through a finalizer that
 * deletes the data claim only when retainPolicy is Delete.
 */
import {
  CoreV1Api,
  CustomObjectsApi,
  PatchStrategy,
  setHeaderOptions,
  type KubeConfig,
  type V1PersistentVolumeClaim,
  type V1Secret,
} from "@kubernetes/client-node";
import { durationToMs, sizeToBytes } from "../../crds/schema/fields.ts";
import { offsiteServerSpec, type OffsiteServerStatus } from "../../crds/schema/offsiteServer.ts";
import { GROUP, VERSION, type OffsiteServer } from "../../crds/definitions.ts";
import { certificateNotAfter } from "../../pki/certificates.ts";
import { findCondition, setCondition } from "../runtime/conditions.ts";
import type { EventRecorder } from "../runtime/events.ts";
import type { Applier } from "../runtime/kubeApi.ts";
import { ReconcileError, errorMessage, isNotFound, readOptional } from "../runtime/kubeApi.ts";
import { forObject, type Logger } from "../runtime/logger.ts";
import type { OperatorMetrics } from "../runtime/metrics.ts";
import type { ReconcileResult } from "../runtime/workQueue.ts";
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
  type ServerIdentity,
  type SpecProblem,
} from "./desiredState.ts";
import { FINALIZER, offsiteServerNames, serverHosts } from "./names.ts";
import { computeStatus } from "./status.ts";

export const PLURAL = "offsiteservers";

/** What a reconcile needs from the outside world; no globals. */
export interface OffsiteServerContext {
  kc: KubeConfig;
  applier: Applier;
  events: EventRecorder;
  metrics: OperatorMetrics;
  logger: Logger;
  defaultImage: string;
  now?: () => Date;
}

const DAY_MS = 24 * 3600 * 1000;
/** Re-check servers that wait on something outside our watches (a load balancer address). */
const POLL_WHILE_WAITING_MS = 30_000;

export async function reconcileOffsiteServer(
  ctx: OffsiteServerContext,
  namespace: string,
  name: string,
): Promise<ReconcileResult> {
  const custom = ctx.kc.makeApiClient(CustomObjectsApi);
  const core = ctx.kc.makeApiClient(CoreV1Api);
  const log = forObject(ctx.logger, "OffsiteServer", namespace, name);
  const now = ctx.now?.() ?? new Date();
  const names = offsiteServerNames(name);

  const server = (await readOptional(
    custom.getNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: PLURAL, name }),
  )) as OffsiteServer | undefined;
  if (!server) {
    ctx.metrics.forgetServer(namespace, name);
    return {};
  }
  if (server.metadata.deletionTimestamp) return finalize(ctx, server, log);
  if (!server.metadata.finalizers?.includes(FINALIZER)) {
    await custom.patchNamespacedCustomObject(
      {
        group: GROUP,
        version: VERSION,
        namespace,
        plural: PLURAL,
        name,
        body: {
          metadata: {
            resourceVersion: server.metadata.resourceVersion,
            finalizers: [...(server.metadata.finalizers ?? []), FINALIZER],
          },
        },
      },
      mergePatch(),
    );
    return { requeueAfterMs: 0 }; // the update event brings us back with the new resourceVersion
  }

  const parsed = offsiteServerSpec.safeParse(server.spec);
  if (!parsed.success) {
    // Slipped past the API server's schema (an older CRD, a direct etcd write): report, don't crash-loop.
    const message = `The spec is invalid: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}. Fix the OffsiteServer; nothing was changed.`;
    const wasInvalid = findCondition(server.status?.conditions, "Ready")?.reason === "InvalidSpec";
    await writeStatus(ctx, server, {
      ...server.status,
      phase: "Degraded",
      observedGeneration: server.metadata.generation ?? 0,
      conditions: setCondition(
        server.status?.conditions,
        { type: "Ready", status: "False", reason: "InvalidSpec", message },
        server.metadata.generation,
        now,
      ),
    });
    if (!wasInvalid) await ctx.events.record(server, "Warning", "InvalidSpec", message);
    log.warn({ reason: "InvalidSpec" }, message);
    ctx.metrics.serverReady.set({ namespace, name }, 0);
    return {};
  }
  const spec = parsed.data;
  const identity: ServerIdentity = {
    name,
    namespace,
    uid: server.metadata.uid!,
    ...(server.metadata.annotations ? { annotations: server.metadata.annotations } : {}),
  };
  const problems: SpecProblem[] = [];

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
  const hosts = serverHosts(name, namespace, spec.service.externalAddress);
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

  const service = await ctx.applier.apply(desiredService(identity, spec));
  const previousRestart = server.status?.restartedAt;
  const statefulSet = await ctx.applier.apply(
    desiredStatefulSet({
      server: identity,
      spec,
      defaultImage: ctx.defaultImage,
      tlsChecksum: tlsChecksum(serving),
    }),
  );
  const restartAt = identity.annotations?.["offsite.dev/restart-at"];
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

  const status = computeStatus({
    name,
    namespace,
    generation: server.metadata.generation,
    annotations: identity.annotations,
    spec,
    previous: server.status,
    statefulSet,
    service,
    claim,
    nodeAddress,
    certificateNotAfter: notAfter,
    problems,
    now,
  });
  await writeStatus(ctx, server, status);

  const wasReady = findCondition(server.status?.conditions, "Ready");
  const isReady = findCondition(status.conditions, "Ready")!;
  if (wasReady?.status !== isReady.status || wasReady?.reason !== isReady.reason) {
    await ctx.events.record(
      server,
      isReady.status === "True" ? "Normal" : "Warning",
      isReady.reason,
      isReady.message,
    );
  }
  for (const problem of problems) {
    if (findCondition(server.status?.conditions, "Degraded")?.reason !== problem.reason) {
      await ctx.events.record(server, "Warning", problem.reason, problem.message);
    }
  }
  ctx.metrics.serverReady.set({ namespace, name }, isReady.status === "True" ? 1 : 0);
  if (status.capacity?.totalBytes !== undefined)
    ctx.metrics.serverCapacityBytes.set({ namespace, name }, status.capacity.totalBytes);
  if (status.capacity?.usedBytes !== undefined)
    ctx.metrics.serverUsedBytes.set({ namespace, name }, status.capacity.usedBytes);
  for (const state of ["Online", "Offline", "NeverCheckedIn", "Suspended"] as const) {
    ctx.metrics.serverSources.set(
      { namespace, name, state },
      (status.sources ?? []).filter((s) => s.state === state).length,
    );
  }

  const renewInMs = renewalDueAt(serving!, renewBeforeMs).getTime() - now.getTime();
  const waiting = isReady.reason === "LoadBalancerPending" || isReady.reason === "EndpointUnknown";
  // setTimeout cannot wait longer than ~24.8 days; a later run re-arms the timer.
  return {
    requeueAfterMs: Math.min(Math.max(renewInMs, 1000), waiting ? POLL_WHILE_WAITING_MS : 24 * DAY_MS),
  };
}

async function finalize(
  ctx: OffsiteServerContext,
  server: OffsiteServer,
  log: Logger,
): Promise<ReconcileResult> {
  const { namespace, name } = server.metadata as { namespace: string; name: string };
  if (!server.metadata.finalizers?.includes(FINALIZER)) return {};
  const core = ctx.kc.makeApiClient(CoreV1Api);
  const claimName = offsiteServerNames(name).dataClaim;
  const deletesData = server.spec?.retainPolicy === "Delete" && !server.spec.storage?.existingClaim;
  if (deletesData) {
    try {
      await core.deleteNamespacedPersistentVolumeClaim({ name: claimName, namespace });
      log.info({ claim: claimName }, "deleted the data claim (retainPolicy: Delete)");
    } catch (error) {
      if (!isNotFound(error))
        throw new ReconcileError("DeleteClaimFailed", `deleting ${claimName} failed: ${errorMessage(error)}`);
    }
  } else {
    log.info(
      { claim: server.spec?.storage?.existingClaim ?? claimName },
      "kept the data volume (retainPolicy: Retain)",
    );
  }
  await ctx.events.record(
    server,
    "Normal",
    "Finalized",
    deletesData
      ? `Deleted the data claim ${claimName} as retainPolicy is Delete.`
      : `Kept the data volume ${server.spec?.storage?.existingClaim ?? claimName} (retainPolicy: Retain); recreate the OffsiteServer with the same name to use it again.`,
  );
  await ctx.kc.makeApiClient(CustomObjectsApi).patchNamespacedCustomObject(
    {
      group: GROUP,
      version: VERSION,
      namespace,
      plural: PLURAL,
      name,
      body: {
        metadata: {
          resourceVersion: server.metadata.resourceVersion,
          finalizers: server.metadata.finalizers.filter((f) => f !== FINALIZER),
        },
      },
    },
    mergePatch(),
  );
  ctx.metrics.forgetServer(namespace, name);
  return {};
}

/** Replaces status when it changed; resourceVersion makes a concurrent change a 409 (retried). */
async function writeStatus(
  ctx: OffsiteServerContext,
  server: OffsiteServer,
  status: OffsiteServerStatus,
): Promise<void> {
  if (JSON.stringify(status) === JSON.stringify(server.status)) return;
  const { namespace, name } = server.metadata as { namespace: string; name: string };
  await ctx.kc.makeApiClient(CustomObjectsApi).replaceNamespacedCustomObjectStatus({
    group: GROUP,
    version: VERSION,
    namespace,
    plural: PLURAL,
    name,
    body: { ...server, status },
  });
}

function mergePatch() {
  return setHeaderOptions("Content-Type", PatchStrategy.MergePatch);
}
