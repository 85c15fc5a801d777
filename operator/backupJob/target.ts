/**
 * Where a BackupJob's data goes: the one function that turns spec.target into an endpoint,
 * the CA its certificate must chain to, and how the source's client certificate is had.
 * A pool of servers (spec.target.offsiteServerSelector, a later issue) replaces this
 * function's choice of server, nothing else.
 *
 * Read from the API server, not a cache: a missing server or CA is acted upon (reported,
 * and the run fails), so a cache miss must not look like one.
 */
import { X509Certificate } from "node:crypto";
import { CoreV1Api, CustomObjectsApi } from "@kubernetes/client-node";
import { GROUP, VERSION, type BackupJob, type OffsiteServer } from "../../crds/definitions.ts";
import type { BackupJobSpec } from "../../crds/schema/backupJob.ts";
import type { CertificateAndKey } from "../../pki/certificates.ts";
import type { ControllerContext } from "../runtime/controller.ts";
import { readOptional } from "../runtime/kubeApi.ts";
import { caFromSecret } from "../offsiteServer/certificates.ts";
import { offsiteServerNames, PLURAL as SERVER_PLURAL } from "../offsiteServer/names.ts";
import { decodeSecretKey } from "../agentControl/tlsSecrets.ts";

export interface ResolvedTarget {
  /** namespace/name of an OffsiteServer, or the external endpoint (status.server). */
  display: string;
  endpoint: string;
  caPem: string;
  /** An OffsiteServer's CA, which issues the source's certificate; absent for an external server. */
  issuer?: CertificateAndKey;
  /** An external server's client certificate, given by the user in a Secret. */
  clientCertificate?: { certificate: string; privateKey: string };
  /** The server refuses this source's pushes (spec.suspendedSources). */
  suspended: boolean;
  /** The server is not Ready yet; a run now would likely fail as unreachable. */
  notReady?: string;
}

export interface TargetProblem {
  reason: "TargetNotFound" | "TargetNotReady" | "TargetPoolNotSupported" | "CertificateInvalid";
  message: string;
}

export type TargetResolution = { target: ResolvedTarget } | { problem: TargetProblem };

export async function resolveTarget(
  ctx: ControllerContext,
  job: BackupJob,
  spec: BackupJobSpec,
  source: string,
): Promise<TargetResolution> {
  const namespace = job.metadata.namespace!;
  const core = ctx.kc.makeApiClient(CoreV1Api);
  const { offsiteServer, external } = spec.target;
  if (external) {
    const secret = await readOptional(core.readNamespacedSecret({ name: external.tlsSecretName, namespace }));
    const certificate = decodeSecretKey(secret, "tls.crt");
    const privateKey = decodeSecretKey(secret, "tls.key");
    const caPem = decodeSecretKey(secret, "ca.crt");
    if (!certificate || !privateKey || !caPem)
      return {
        problem: {
          reason: "CertificateInvalid",
          message: `the Secret ${namespace}/${external.tlsSecretName} (spec.target.external.tlsSecretName) ${secret ? "lacks tls.crt, tls.key or ca.crt" : "does not exist"}; create it with the client certificate the other site issued for this source`,
        },
      };
    const validity = certificateValidityProblem(certificate, ctx.now());
    if (validity)
      return {
        problem: {
          reason: "CertificateInvalid",
          message: `the client certificate in Secret ${namespace}/${external.tlsSecretName} ${validity}; ask the other site for a new one and replace tls.crt and tls.key`,
        },
      };
    return {
      target: {
        display: external.endpoint,
        endpoint: external.endpoint,
        caPem,
        clientCertificate: { certificate, privateKey },
        suspended: false,
      },
    };
  }
  if (!offsiteServer)
    return {
      problem: {
        reason: "TargetPoolNotSupported",
        message:
          "spec.target.offsiteServerSelector (a pool of servers) is not supported by this operator version yet; name one server in spec.target.offsiteServer",
      },
    };
  const serverNamespace = offsiteServer.namespace ?? namespace;
  const display = `${serverNamespace}/${offsiteServer.name}`;
  const server = (await readOptional(
    ctx.kc.makeApiClient(CustomObjectsApi).getNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: serverNamespace,
      plural: SERVER_PLURAL,
      name: offsiteServer.name,
    }),
  )) as OffsiteServer | undefined;
  if (!server)
    return {
      problem: {
        reason: "TargetNotFound",
        message: `the OffsiteServer ${display} does not exist; create it, or fix spec.target.offsiteServer`,
      },
    };
  const names = offsiteServerNames(offsiteServer.name);
  const issuer = caFromSecret(
    await readOptional(core.readNamespacedSecret({ name: names.caSecret, namespace: serverNamespace })),
  );
  if (!issuer)
    return {
      problem: {
        reason: "TargetNotReady",
        message: `the OffsiteServer ${display} has no CA yet (Secret ${names.caSecret}); the operator creates it when it reconciles the server`,
      },
    };
  const ready = server.status?.conditions?.find((c) => c.type === "Ready");
  return {
    target: {
      display,
      endpoint: `${names.service}.${serverNamespace}.svc:${server.spec.port ?? 5722}`,
      caPem: issuer.certificatePem,
      issuer,
      suspended: (server.spec.suspendedSources ?? []).includes(source),
      ...(ready?.status === "True"
        ? {}
        : {
            notReady: `the OffsiteServer ${display} is not Ready${ready?.message ? `: ${ready.message}` : ""}`,
          }),
    },
  };
}

/** The site GUID by default: the kube-system namespace's UID, stable for the cluster's life. */
export async function clusterSiteGuid(ctx: ControllerContext): Promise<string> {
  const namespace = await ctx.kc.makeApiClient(CoreV1Api).readNamespace({ name: "kube-system" });
  return namespace.metadata!.uid!;
}

/** Why a PEM certificate cannot be used now (expired, not yet valid, unreadable), or undefined. */
function certificateValidityProblem(pem: string, now: Date): string | undefined {
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(pem);
  } catch {
    return "cannot be read as a PEM certificate";
  }
  if (new Date(certificate.validTo) <= now)
    return `expired at ${new Date(certificate.validTo).toISOString()}`;
  if (new Date(certificate.validFrom) > now)
    return `is not valid before ${new Date(certificate.validFrom).toISOString()}`;
  return undefined;
}
