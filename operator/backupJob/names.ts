/** Names and labels of what the operator derives from a BackupJob. */
import { createHash } from "node:crypto";
import type { V1OwnerReference } from "@kubernetes/client-node";
import { API_VERSION } from "../../crds/definitions.ts";
import { MANAGED_BY, MANAGED_BY_LABEL, ownerLabel, ownerReference } from "../runtime/ownership.ts";

export const KIND = "BackupJob";
export const PLURAL = "backupjobs";
export const JOB_LABEL = ownerLabel(KIND);

export function jobOwnerReference(job: { name: string; uid: string }): V1OwnerReference {
  return ownerReference({ apiVersion: API_VERSION, kind: KIND, name: job.name, uid: job.uid });
}

/** A name of at most 63 characters from a job's name and a suffix (pod names are host names). */
function shortName(jobName: string, suffix: string): string {
  const name = `${jobName}-${suffix}`;
  if (name.length <= 63) return name;
  const hash = createHash("sha256").update(jobName).digest("hex").slice(0, 8);
  return `${jobName.slice(0, 63 - suffix.length - 10)}-${hash}-${suffix}`;
}

export const backupJobNames = (name: string) => ({
  /** The source's client certificate for the target (CN = source GUID, O = site GUID). */
  sourceSecret: shortName(name, "offsite-source"),
  /** The short-lived pod that runs the agent for a claim (or for a restore). */
  moverPod: shortName(name, "offsite-mover"),
});

/**
 * Labels on what the operator creates for a job; the owner label maps changes back to it
 * (a label value holds 63 characters, as for OffsiteServers).
 */
export function backupJobLabels(name: string): Record<string, string> {
  return {
    [JOB_LABEL]: name,
    "app.kubernetes.io/part-of": "offsite",
    [MANAGED_BY_LABEL]: MANAGED_BY,
  };
}
