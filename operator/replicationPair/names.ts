/** Names and labels of what the operator derives from a ReplicationPair. */
import type { V1OwnerReference } from "@kubernetes/client-node";
import { API_VERSION } from "../../crds/definitions.ts";
import { MANAGED_BY, MANAGED_BY_LABEL, ownerLabel, ownerReference } from "../runtime/ownership.ts";

export const KIND = "ReplicationPair";
export const PLURAL = "replicationpairs";
export const PAIR_LABEL = ownerLabel(KIND);

export function pairOwnerReference(pair: { name: string; uid: string }): V1OwnerReference {
  return ownerReference({ apiVersion: API_VERSION, kind: KIND, name: pair.name, uid: pair.uid });
}

/** Pair names are at most 52 characters (the CRD says so), so these fit 63. */
export const pairNames = (name: string) => ({
  /** The pair's CA and the two agents' data-session certificates. */
  secret: `${name}-replication`,
  /** The Service in front of the standby's agent, which the primary's agent connects to. */
  standbyService: `${name}-standby`,
});

export function pairLabels(name: string): Record<string, string> {
  return { [PAIR_LABEL]: name, "app.kubernetes.io/part-of": "offsite", [MANAGED_BY_LABEL]: MANAGED_BY };
}
