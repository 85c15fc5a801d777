/**
 * Names and labels of everything the operator derives from an OffsiteServer. The shared
 * parts (managed-by, the owner label, owner references) come from runtime/ownership.ts,
 * so the runtime maps a changed StatefulSet, Service, Secret or claim back to its server.
 */
import { createHash } from "node:crypto";
import { isIP } from "node:net";
import type { V1OwnerReference } from "@kubernetes/client-node";
import { API_VERSION } from "../../crds/definitions.ts";
import { MANAGED_BY, MANAGED_BY_LABEL, ownerLabel, ownerReference } from "../runtime/ownership.ts";

export const KIND = "OffsiteServer";
export const PLURAL = "offsiteservers";
export const SERVER_LABEL = ownerLabel(KIND);
export const RESTART_ANNOTATION = "offsite.dev/restart-at";
export const RECEIVER_PORT_NAME = "offsite";
/** The receiver pod's one container; status reads its state by this name. */
export const RECEIVER_CONTAINER = "receiver";

/** The owner reference that puts an object under the server's garbage collection. */
export function serverOwnerReference(server: { name: string; uid: string }): V1OwnerReference {
  return ownerReference({ apiVersion: API_VERSION, kind: KIND, name: server.name, uid: server.uid });
}

export const offsiteServerNames = (name: string) => ({
  statefulSet: name,
  service: name,
  pod: `${name}-0`,
  dataClaim: `${name}-data`,
  caSecret: `${name}-ca`,
  serverTlsSecret: `${name}-tls`,
  /** One client certificate Secret per source, named by a hash so any GUID length fits. */
  sourceTlsSecret: (site: string, source: string) =>
    `${name}-src-${createHash("sha256").update(`${site}/${source}`).digest("hex").slice(0, 10)}`,
});

/** Labels on every object of one OffsiteServer; the first two also select its pod. */
export function offsiteServerLabels(name: string): Record<string, string> {
  return {
    [SERVER_LABEL]: name,
    "app.kubernetes.io/name": "offsite-receiver",
    "app.kubernetes.io/instance": name,
    "app.kubernetes.io/component": "receiver",
    "app.kubernetes.io/part-of": "offsite",
    [MANAGED_BY_LABEL]: MANAGED_BY,
  };
}

export function offsiteServerSelector(name: string): Record<string, string> {
  return { [SERVER_LABEL]: name, "app.kubernetes.io/name": "offsite-receiver" };
}

/** The names (and the ClusterIP) the receiver's certificate must carry. */
export function serverHosts(
  name: string,
  namespace: string,
  externalAddress?: string,
  clusterIP?: string,
): string[] {
  const hosts = [
    name,
    `${name}.${namespace}`,
    `${name}.${namespace}.svc`,
    `${name}.${namespace}.svc.cluster.local`,
  ];
  if (externalAddress) hosts.push(externalAddress);
  // A headless Service has "None"; only a real address belongs in the certificate.
  if (clusterIP && isIP(clusterIP)) hosts.push(clusterIP);
  return hosts;
}
