/**
 * OffsiteServer: a receiver (StatefulSet of one agent in `receive` mode, its volume and a
 * Service) that stores what local sites push, laid out `<site GUID>/<source GUID>/…`.
 */
import { z } from "zod";
import { DEFAULT_RETENTION } from "../../contract/retention.ts";
import { DEFAULT_IDLE_TIMEOUT_MS, DEFAULT_MAX_CONCURRENT_JOBS, DEFAULT_PORT } from "../../contract/roles.ts";
import { msToDuration } from "../../contract/units.ts";
import {
  conditions,
  described,
  duration,
  guid,
  intInRange,
  objectName,
  observedGeneration,
  retention,
  size,
  withRules,
} from "./fields.ts";

const storage = withRules(
  described(
    z.object({
      size: described(
        size(),
        "Capacity requested for the receiver's data volume, e.g. 100Gi. Growing it expands the claim.",
      ).optional(),
      storageClassName: described(
        z.string().max(253),
        "StorageClass of the data volume; the cluster default when empty.",
      ).optional(),
      existingClaim: described(
        objectName("a PersistentVolumeClaim"),
        "Use this existing PersistentVolumeClaim instead of creating one (size and storageClassName must then be empty).",
      ).optional(),
    }),
    "Where the received data lives.",
  ),
  {
    rule: "has(self.existingClaim) != (has(self.size) || has(self.storageClassName))",
    message:
      "set either existingClaim, or size (with an optional storageClassName), not both and not neither",
    holds: (s) =>
      (s.existingClaim !== undefined) !== (s.size !== undefined || s.storageClassName !== undefined),
  },
);

const service = described(
  z
    .object({
      type: described(
        z.enum(["ClusterIP", "NodePort", "LoadBalancer"]),
        "How the receiver is exposed: ClusterIP inside the cluster, NodePort or LoadBalancer for sites in other clusters.",
      ).default("ClusterIP"),
      nodePort: described(
        z.number().int().min(30000).max(32767),
        "Fixed node port when type is NodePort; chosen by the cluster when empty.",
      ).optional(),
      annotations: described(
        z.record(z.string(), z.string()),
        "Annotations for the Service, e.g. for a cloud load balancer.",
      ).optional(),
      externalAddress: described(
        z.string().min(1).max(253),
        "Host name or IP that sources in other clusters use; reported in status.endpoint. Discovered from the Service when empty.",
      ).optional(),
    })
    .default({ type: "ClusterIP" }),
  "The Service in front of the receiver.",
);

const tls = described(
  z
    .object({
      certificateDuration: described(duration(), "Validity of the certificates the operator issues.").default(
        "2160h",
      ),
      renewBefore: described(duration(), "Reissue a certificate this long before it expires.").default(
        "360h",
      ),
    })
    .default({ certificateDuration: "2160h", renewBefore: "360h" }),
  "Mutual TLS: the operator's CA issues the receiver's certificate and one client certificate per source.",
);

const resourceList = z.object({
  cpu: described(z.union([z.number().int(), z.string().max(64)]), "CPU, e.g. 500m or 2.").optional(),
  memory: described(size(), "Memory, e.g. 512Mi.").optional(),
});

export const offsiteServerSpec = withRules(
  z.object({
    port: described(
      intInRange(1024, 49151, "port must be a registered port in 1024-49151 (default 5722)"),
      "TCP port the receiver listens on and the Service exposes; a registered port in 1024-49151.",
    ).default(DEFAULT_PORT),
    storage: storage.default({ size: "10Gi" }),
    retainPolicy: described(
      z.enum(["Retain", "Delete"]),
      "What happens to the data volume when the OffsiteServer is deleted: Retain keeps it (the default), Delete removes it.",
    ).default("Retain"),
    service,
    tls,
    retention: retention(
      "Retention of versions for every source on this server (the receiver prunes after each commit).",
    ).default(DEFAULT_RETENTION),
    maxConcurrentJobs: described(
      z.number().int().min(1).max(1024),
      "Jobs (push, compare and restore sessions) the receiver serves at once; one more is refused as busy and its agent retries later.",
    ).default(DEFAULT_MAX_CONCURRENT_JOBS),
    suspendedSources: described(
      z.array(guid("a source")).max(1000),
      "Source GUIDs whose pushes are refused (reported as Suspended); their stored versions are kept.",
    ).default([]),
    idleTimeout: described(
      duration(),
      "End a session whose client sends or reads nothing for this long, freeing its source for the next job; raise it for sources that hash very large files (compare or push with checksum).",
    ).default(msToDuration(DEFAULT_IDLE_TIMEOUT_MS)),
    image: described(
      z.string().min(1).max(1024),
      "Agent image for the receiver; the operator's default agent image when empty.",
    ).optional(),
    resources: described(
      z.object({
        requests: described(resourceList, "Minimum resources.").optional(),
        limits: described(resourceList, "Maximum resources.").optional(),
      }),
      "Compute resources of the receiver container.",
    ).optional(),
    nodeSelector: described(
      z.record(z.string(), z.string()),
      "Schedule the receiver only on nodes with these labels.",
    ).optional(),
    suspend: described(z.boolean(), "Stop the receiver (scale to zero) without deleting its data.").default(
      false,
    ),
  }),
  {
    rule: "!has(self.service) || !has(self.service.nodePort) || self.service.type == 'NodePort'",
    message: "service.nodePort is only allowed when service.type is NodePort",
    fieldPath: ".service.nodePort",
    holds: (s) => s.service.nodePort === undefined || s.service.type === "NodePort",
  },
);

/** The bound of status.sources (operator/offsiteServer/sources.ts keeps to it). */
export const MAX_STATUS_SOURCES = 1000;

const sourceStatus = z.object({
  // Written by the operator, so no CEL here: rules inside status lists only cost API server budget.
  site: described(
    z.string().max(63),
    "GUID of the site the source belongs to; * for a suspended source no BackupJob or check-in names (the receiver refuses it from any site).",
  ),
  source: described(z.string().max(63), "GUID of the source (protected workload/volume)."),
  name: described(
    z.string().max(512),
    "namespace/name of the BackupJob or ReplicationPair, when known (several, comma-separated, when they share the source).",
  ).optional(),
  state: described(
    z.enum(["Online", "Offline", "NeverCheckedIn", "Suspended"]),
    "Online: its last session ended within its check-in window (twice its BackupJob's schedule interval plus 10 minutes; 25h without a schedule); Offline: missed its check-ins; NeverCheckedIn: a BackupJob targets this server but the receiver has no session of it; Suspended: refused by spec.suspendedSources.",
  ),
  lastCheckIn: described(
    z.iso.datetime(),
    "When a session of the source last ended, whatever its outcome.",
  ).optional(),
  versions: described(z.number().int().nonnegative(), "Versions stored for the source.").optional(),
  latestVersion: described(z.string().max(128), "ID of the newest complete version.").optional(),
  bytesStored: described(
    z.number().int().nonnegative(),
    "Bytes of the newest version's files by its manifest; older versions share unchanged files with it (status.capacity.usedBytes is the volume's exact use).",
  ).optional(),
});

export const offsiteServerStatus = z.object({
  phase: described(
    z.enum(["Pending", "Provisioning", "Ready", "Degraded", "Suspended", "Terminating"]),
    "A one-word summary; the conditions carry the details.",
  ).optional(),
  endpoint: described(
    z.string().max(512),
    "host:port where sources in other clusters reach this server.",
  ).optional(),
  internalEndpoint: described(
    z.string().max(512),
    "host:port inside the cluster (the Service's DNS name).",
  ).optional(),
  caSecretName: described(
    z.string().max(253),
    "Secret holding the CA that signs this server's certificates.",
  ).optional(),
  serverCertificateSecretName: described(
    z.string().max(253),
    "Secret holding the receiver's serving certificate.",
  ).optional(),
  certificateNotAfter: described(z.iso.datetime(), "When the receiver's certificate expires.").optional(),
  capacity: described(
    z.object({
      totalBytes: described(z.number().int().nonnegative(), "Size of the data volume in bytes.").optional(),
      usedBytes: described(
        z.number().int().nonnegative(),
        "Bytes in use, as reported by the receiver.",
      ).optional(),
      reportedAt: described(z.iso.datetime(), "When the receiver last reported usage.").optional(),
    }),
    "How full the data volume is.",
  ).optional(),
  sources: described(
    z.array(sourceStatus).max(MAX_STATUS_SOURCES),
    `Sources that push to this server: those the receiver reports, those BackupJobs target it with, and spec.suspendedSources; sorted by site and source, the first ${MAX_STATUS_SOURCES}.`,
    {
      "x-kubernetes-list-type": "map",
      "x-kubernetes-list-map-keys": ["site", "source"],
    },
  ).optional(),
  restartedAt: described(z.string().max(64), "The offsite.dev/restart-at value last acted on.").optional(),
  observedGeneration: observedGeneration().optional(),
  conditions: conditions().optional(),
});

export type OffsiteServerSpec = z.infer<typeof offsiteServerSpec>;
export type OffsiteServerStatus = z.infer<typeof offsiteServerStatus>;
