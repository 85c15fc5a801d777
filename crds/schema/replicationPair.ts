/**
 * ReplicationPair: almost real-time replication from a primary workload to a standby,
 * a Service that fronts whichever side is primary, and failover by swapping the
 * Service's selector when the primary's heartbeat is lost.
 */
import { z } from "zod";
import {
  conditions,
  contentFirewall,
  described,
  duration,
  fileFilters,
  objectName,
  observedGeneration,
  withRules,
} from "./fields.ts";

const side = (which: string) =>
  described(
    z.object({
      kind: described(z.enum(["Deployment", "StatefulSet"]), "Kind of the workload.").default("Deployment"),
      name: described(objectName("a Deployment or StatefulSet"), "Name of the workload in this namespace."),
      containerName: described(
        z.string().max(63),
        "Name of the agent sidecar container in the workload's pods.",
      ).default("offsite-agent"),
      path: described(
        z.string().min(1).max(4096),
        "Directory inside the agent's view of the volume that is replicated.",
      ).default("/data"),
    }),
    which,
  );

export const replicationPairSpec = withRules(
  z.object({
    primary: side(
      "The workload that serves traffic and whose changes are replicated, unless a failover moved that role.",
    ),
    standby: side("The workload that receives the changes and takes over when the primary is lost."),
    service: described(
      z.object({
        name: described(
          objectName("a Service"),
          "The Service whose selector the operator points at the active side.",
        ),
      }),
      "The Service in front of the pair. The operator owns its selector; ports and the rest stay yours.",
    ),
    failover: described(
      z
        .object({
          policy: described(
            z.enum(["Automatic", "Manual"]),
            "Automatic promotes the standby when the primary's heartbeat is lost; Manual only reports it.",
          ).default("Automatic"),
          heartbeatInterval: described(duration(), "How often each agent reports it is alive.").default("1s"),
          heartbeatTimeout: described(
            duration(),
            "The primary counts as lost when no heartbeat arrived for this long.",
          ).default("3s"),
        })
        .default({ policy: "Automatic", heartbeatInterval: "1s", heartbeatTimeout: "3s" }),
      "When and how the standby is promoted.",
    ),
    filters: fileFilters(),
    contentFirewall: contentFirewall(true),
    batchWindow: described(
      duration(),
      "Changes seen within this window travel together; smaller means lower lag, larger means fewer round trips.",
    ).default("50ms"),
    quarantine: described(
      z
        .object({
          keepFor: described(
            duration(),
            "How long writes kept aside from a demoted primary are kept.",
          ).default("720h"),
        })
        .default({ keepFor: "720h" }),
      "Writes a primary made after it lost its role are kept aside and reported, never overwritten silently.",
    ),
    paused: described(
      z.boolean(),
      "Stop replicating (changes queue up on the primary) without failing over.",
    ).default(false),
  }),
  {
    rule: "!(self.primary.name == self.standby.name && self.primary.kind == self.standby.kind)",
    message: "primary and standby must be different workloads",
    fieldPath: ".standby.name",
    holds: (s) => !(s.primary.name === s.standby.name && s.primary.kind === s.standby.kind),
  },
);

const blockedFile = z.object({
  path: described(z.string().max(4096), "Path of the file, relative to the replicated directory."),
  reason: described(
    z.string().max(256),
    "Why it was stopped, e.g. ELF executable, shebang script, pattern *.php.",
  ),
  time: described(z.iso.datetime(), "When it was stopped."),
});

const quarantinedFile = z.object({
  path: described(z.string().max(4096), "Path of the file, relative to the replicated directory."),
  side: described(z.enum(["primary", "standby"]), "Which workload wrote it."),
  keptAt: described(z.string().max(4096), "Where the write was kept aside on that side's volume."),
  time: described(z.iso.datetime(), "When it was kept aside."),
});

export const replicationPairStatus = z.object({
  phase: described(
    z.enum(["Pending", "Syncing", "InSync", "Resyncing", "Degraded", "FailingOver", "Paused"]),
    "A one-word summary; the conditions carry the details.",
  ).optional(),
  activeSide: described(
    z.enum(["primary", "standby"]),
    "Which side the Service currently points at: primary until a failover promotes the standby.",
  ).optional(),
  activeWorkload: described(
    z.string().max(253),
    "Name of the workload that is currently primary.",
  ).optional(),
  lastHeartbeat: described(
    z.object({
      primary: described(z.iso.datetime(), "Last heartbeat of the primary workload's agent.").optional(),
      standby: described(z.iso.datetime(), "Last heartbeat of the standby workload's agent.").optional(),
    }),
    "When each side last reported it is alive.",
  ).optional(),
  lagSeconds: described(
    z.string().max(32),
    "Age of the oldest change not yet durable on the standby, in seconds (a decimal string).",
  ).optional(),
  pendingChanges: described(
    z.number().int().nonnegative(),
    "Changes seen on the primary and not yet on the standby.",
  ).optional(),
  lastSyncTime: described(z.iso.datetime(), "When the standby last caught up completely.").optional(),
  failoverCount: described(z.number().int().nonnegative(), "Failovers performed so far.").optional(),
  lastFailover: described(
    z.object({
      time: described(z.iso.datetime(), "When the Service selector was swapped."),
      reason: described(z.string().max(1024), "Why, e.g. HeartbeatLost."),
      from: described(z.string().max(253), "Workload that lost the primary role."),
      to: described(z.string().max(253), "Workload that was promoted."),
    }),
    "The most recent failover.",
  ).optional(),
  blockedFiles: described(
    z.number().int().nonnegative(),
    "Files the content firewall stopped so far.",
  ).optional(),
  recentBlocked: described(
    z.array(blockedFile),
    "The most recent files the content firewall stopped (at most 20).",
  ).optional(),
  quarantinedFiles: described(z.number().int().nonnegative(), "Writes kept aside so far.").optional(),
  recentQuarantined: described(
    z.array(quarantinedFile),
    "The most recent writes kept aside (at most 20).",
  ).optional(),
  observedGeneration: observedGeneration().optional(),
  conditions: conditions().optional(),
});

export type ReplicationPairSpec = z.infer<typeof replicationPairSpec>;
export type ReplicationPairStatus = z.infer<typeof replicationPairStatus>;
