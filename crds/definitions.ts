/**
 * The Offsite API: one entry per kind, the single source of truth from which the CRD
 * YAML in crds/generated/ is rendered (`npm run crds:generate`) and from which the
 * operator and agent take their TypeScript types.
 */
import type { V1ObjectMeta } from "@kubernetes/client-node";
import type { z } from "zod";
import type { OffsiteServerSpec, OffsiteServerStatus } from "./schema/offsiteServer.ts";
import type { BackupJobSpec, BackupJobStatus } from "./schema/backupJob.ts";
import type { ReplicationPairSpec, ReplicationPairStatus } from "./schema/replicationPair.ts";
import { backupJobSpec, backupJobStatus } from "./schema/backupJob.ts";
import { offsiteServerSpec, offsiteServerStatus } from "./schema/offsiteServer.ts";
import { replicationPairSpec, replicationPairStatus } from "./schema/replicationPair.ts";

export const GROUP = "offsite.dev";
export const VERSION = "v1alpha1";
export const API_VERSION = `${GROUP}/${VERSION}`;
export const CATEGORY = "offsite";

export interface PrinterColumn {
  name: string;
  type: "string" | "integer" | "number" | "boolean" | "date";
  jsonPath: string;
  description: string;
  priority?: number;
}

export interface KindDefinition {
  kind: string;
  plural: string;
  singular: string;
  shortNames: string[];
  description: string;
  spec: z.ZodType;
  status: z.ZodType;
  printerColumns: PrinterColumn[];
  /** Longest metadata.name the kind accepts: the names of objects the operator derives from it must stay valid. */
  maxNameLength?: number;
}

const readyColumn: PrinterColumn = {
  name: "Ready",
  type: "string",
  jsonPath: '.status.conditions[?(@.type=="Ready")].status',
  description: "Whether the object is ready.",
};
const ageColumn: PrinterColumn = {
  name: "Age",
  type: "date",
  jsonPath: ".metadata.creationTimestamp",
  description: "Time since creation.",
};

export const offsiteServerKind: KindDefinition = {
  kind: "OffsiteServer",
  plural: "offsiteservers",
  singular: "offsiteserver",
  shortNames: ["osrv"],
  description:
    "An offsite receiver (StatefulSet, volume and Service) that stores what sites push, laid out <site GUID>/<source GUID>/, one browsable version per finished job.",
  spec: offsiteServerSpec,
  status: offsiteServerStatus,
  // The StatefulSet's pods get a controller-revision-hash label of name + 11 characters, limited to 63.
  maxNameLength: 52,
  printerColumns: [
    {
      name: "Phase",
      type: "string",
      jsonPath: ".status.phase",
      description: "Summary of the server's state.",
    },
    readyColumn,
    {
      name: "Endpoint",
      type: "string",
      jsonPath: ".status.endpoint",
      description: "Where sources reach the server.",
    },
    { name: "Port", type: "integer", jsonPath: ".spec.port", description: "Receiver port.", priority: 1 },
    {
      name: "Used",
      type: "integer",
      jsonPath: ".status.capacity.usedBytes",
      description: "Bytes in use on the data volume.",
      priority: 1,
    },
    ageColumn,
  ],
};

export const backupJobKind: KindDefinition = {
  kind: "BackupJob",
  plural: "backupjobs",
  singular: "backupjob",
  shortNames: ["bj", "obj"],
  description:
    "A backup pushed by an agent next to the data to an offsite server in one session: scheduled, on demand, a compare, or a restore.",
  spec: backupJobSpec,
  status: backupJobStatus,
  maxNameLength: 52,
  printerColumns: [
    { name: "Mode", type: "string", jsonPath: ".spec.mode", description: "Backup, Compare or Restore." },
    { name: "Schedule", type: "string", jsonPath: ".spec.schedule", description: "Cron schedule." },
    { name: "Phase", type: "string", jsonPath: ".status.phase", description: "State of the latest run." },
    {
      name: "Last Success",
      type: "date",
      jsonPath: ".status.lastSuccessfulTime",
      description: "When a run last succeeded.",
    },
    {
      name: "Version",
      type: "string",
      jsonPath: ".status.latestVersion",
      description: "Newest version.",
      priority: 1,
    },
    ageColumn,
  ],
};

export const replicationPairKind: KindDefinition = {
  kind: "ReplicationPair",
  plural: "replicationpairs",
  singular: "replicationpair",
  shortNames: ["rp", "orp"],
  description:
    "Almost real-time replication from a primary workload to a standby, with failover by swapping the Service selector when the primary is lost.",
  spec: replicationPairSpec,
  status: replicationPairStatus,
  maxNameLength: 52,
  printerColumns: [
    { name: "Phase", type: "string", jsonPath: ".status.phase", description: "Summary of the pair's state." },
    {
      name: "Active",
      type: "string",
      jsonPath: ".status.activeWorkload",
      description: "Workload the Service points at.",
    },
    {
      name: "Lag",
      type: "string",
      jsonPath: ".status.lagSeconds",
      description: "Replication lag in seconds.",
    },
    {
      name: "Failovers",
      type: "integer",
      jsonPath: ".status.failoverCount",
      description: "Failovers so far.",
      priority: 1,
    },
    {
      name: "Blocked",
      type: "integer",
      jsonPath: ".status.blockedFiles",
      description: "Files stopped by the content firewall.",
      priority: 1,
    },
    ageColumn,
  ],
};

export const KINDS: readonly KindDefinition[] = [backupJobKind, offsiteServerKind, replicationPairKind];

export type { BackupJobSpec, BackupJobStatus } from "./schema/backupJob.ts";
export type { OffsiteServerSpec, OffsiteServerStatus } from "./schema/offsiteServer.ts";
export type { ReplicationPairSpec, ReplicationPairStatus } from "./schema/replicationPair.ts";

/** An Offsite custom resource as read from the API server. */
export interface OffsiteResource<Spec, Status> {
  apiVersion: string;
  kind: string;
  metadata: V1ObjectMeta;
  spec: Spec;
  status?: Status;
}
export type OffsiteServer = OffsiteResource<OffsiteServerSpec, OffsiteServerStatus>;
export type BackupJob = OffsiteResource<BackupJobSpec, BackupJobStatus>;
export type ReplicationPair = OffsiteResource<ReplicationPairSpec, ReplicationPairStatus>;
