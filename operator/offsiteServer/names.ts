/** Names and labels of everything the operator derives from an OffsiteServer. */
import { createHash } from "node:crypto";

export const MANAGED_BY = "offsite-operator";
export const SERVER_LABEL = "offsite.dev/offsiteserver";
export const RESTART_ANNOTATION = "offsite.dev/restart-at";
export const FINALIZER = "offsite.dev/finalizer";
export const RECEIVER_PORT_NAME = "offsite";

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
    "app.kubernetes.io/managed-by": MANAGED_BY,
  };
}

export function offsiteServerSelector(name: string): Record<string, string> {
  return { [SERVER_LABEL]: name, "app.kubernetes.io/name": "offsite-receiver" };
}

/** The DNS names the receiver's certificate must carry. */
export function serverHosts(name: string, namespace: string, externalAddress?: string): string[] {
  const hosts = [
    name,
    `${name}.${namespace}`,
    `${name}.${namespace}.svc`,
    `${name}.${namespace}.svc.cluster.local`,
  ];
  if (externalAddress) hosts.push(externalAddress);
  return hosts;
}
