/**
 * BackupJob: a push agent next to the data sends a whole job to an offsite server in one
 * session. Scheduled (cron), on demand (manualTrigger), a compare that reports differences
 * without sending data, or a restore of any version.
 */
import { z } from "zod";
import {
  conditions,
  contentFirewall,
  cronSchedule,
  described,
  duration,
  fileFilters,
  guid,
  labelSelector,
  matchingString,
  objectName,
  versionId,
  observedGeneration,
  withRules,
} from "./fields.ts";

const source = withRules(
  described(
    z.object({
      podSelector: labelSelector(
        "Pods that carry the Offsite agent as a sidecar next to the data; one of them runs each job.",
      ).optional(),
      persistentVolumeClaim: described(
        z.object({
          claimName: described(objectName("a PersistentVolumeClaim"), "The claim to back up."),
        }),
        "Back up this claim by mounting it read-only into a short-lived agent pod (when no sidecar is used).",
      ).optional(),
      containerName: described(
        z.string().max(63),
        "Name of the agent sidecar container in the selected pods.",
      ).default("offsite-agent"),
      path: described(
        z.string().min(1).max(4096),
        "Directory inside the agent's view of the volume to back up.",
      ).default("/data"),
      guid: described(
        guid("the source"),
        "Source GUID on the offsite server; defaults to this BackupJob's UID. Set it to keep a history across re-created jobs.",
      ).optional(),
    }),
    "What to back up.",
  ),
  {
    rule: "has(self.podSelector) != has(self.persistentVolumeClaim)",
    message: "source needs exactly one of podSelector (an agent sidecar) or persistentVolumeClaim",
    holds: (s) => (s.podSelector !== undefined) !== (s.persistentVolumeClaim !== undefined),
  },
);

const offsiteServerRef = described(
  z.object({
    name: described(objectName("an OffsiteServer"), "Name of the OffsiteServer."),
    namespace: described(
      z.string().max(63),
      "Namespace of the OffsiteServer; this BackupJob's namespace when empty.",
    ).optional(),
  }),
  "A named OffsiteServer in this cluster.",
);

const externalServer = described(
  z.object({
    endpoint: described(
      matchingString(
        /^[A-Za-z0-9.:[\]-]+:[0-9]{1,5}$/,
        300,
        "endpoint must be host:port, e.g. backup.example.com:5722",
      ),
      "host:port of an offsite server outside this cluster.",
    ),
    tlsSecretName: described(
      objectName("a Secret"),
      "Secret with tls.crt, tls.key and ca.crt: this source's client certificate and the server's CA.",
    ),
  }),
  "An offsite server in another cluster or outside Kubernetes.",
);

const target = withRules(
  described(
    z.object({
      offsiteServer: offsiteServerRef.optional(),
      offsiteServerSelector: labelSelector(
        "OffsiteServers sharing the load: the job goes to the matching server with the most free space.",
      ).optional(),
      external: externalServer.optional(),
    }),
    "Where the backup goes: exactly one of offsiteServer, offsiteServerSelector or external.",
  ),
  {
    rule: "[has(self.offsiteServer), has(self.offsiteServerSelector), has(self.external)].filter(x, x).size() == 1",
    message:
      "target needs exactly one of offsiteServer (a named server), offsiteServerSelector (several servers) or external",
    holds: (t) =>
      [t.offsiteServer, t.offsiteServerSelector, t.external].filter((x) => x !== undefined).length === 1,
  },
);

export const backupJobSpec = withRules(
  z.object({
    source,
    target,
    mode: described(
      z.enum(["Backup", "Compare", "Restore"]),
      "Backup pushes changes; Compare reports how the latest (or compare.version) version differs from the source without sending file data; Restore brings restore.version back.",
    ).default("Backup"),
    schedule: described(
      cronSchedule(),
      'When to run, in cron format (e.g. "0 3 * * *"); without a schedule the job runs once and then on manualTrigger.',
    ).optional(),
    timeZone: described(
      z.string().min(1).max(64),
      "IANA time zone of the schedule (e.g. Europe/Amsterdam); the operator's zone (UTC) when empty.",
    ).optional(),
    manualTrigger: described(
      z.string().min(1).max(128),
      "Change this to any new value to run the job now; status.lastManualTrigger echoes it when the run has started.",
    ).optional(),
    suspend: described(z.boolean(), "Skip scheduled runs while true; a running job finishes.").default(false),
    siteGUID: described(
      guid("the site"),
      "Site GUID on the offsite server; the UID of this cluster's kube-system namespace when empty.",
    ).optional(),
    filters: fileFilters(),
    contentFirewall: contentFirewall(false),
    compare: described(
      z.object({
        version: described(versionId(), "Version to compare with; the newest when empty.").optional(),
        checksum: described(
          z.boolean(),
          "Compare file contents by hash, not only size and modification time (reads every file).",
        ).default(false),
      }),
      "Options of a Compare run.",
    ).optional(),
    restore: described(
      z.object({
        version: described(versionId(), "Version to restore; the newest when empty.").optional(),
        path: described(
          z.string().min(1).max(4096),
          "Directory to restore into; source.path when empty. Existing files that differ are replaced.",
        ).optional(),
        deleteExtraFiles: described(
          z.boolean(),
          "Also remove files under the restore path that the version does not hold (rsync --delete); files this job's filters or content firewall leave out are kept, as a backup with them never held those files.",
        ).default(false),
      }),
      "Options of a Restore run.",
    ).optional(),
    activeDeadline: described(
      duration(),
      "A run that takes longer is stopped and marked failed; it resumes next run.",
    ).default("6h"),
    backoffLimit: described(
      z.number().int().min(0).max(100),
      "Retries of a failed run before it is reported Failed; each retry resumes where the last stopped.",
    ).default(3),
    historyLimit: described(
      z.number().int().min(0).max(100),
      "Finished runs kept in status.history.",
    ).default(5),
  }),
  {
    rule: "!has(self.compare) || self.mode == 'Compare'",
    message: "compare options are only allowed when mode is Compare",
    fieldPath: ".compare",
    holds: (s) => s.compare === undefined || s.mode === "Compare",
  },
  {
    rule: "!has(self.restore) || self.mode == 'Restore'",
    message: "restore options are only allowed when mode is Restore",
    fieldPath: ".restore",
    holds: (s) => s.restore === undefined || s.mode === "Restore",
  },
  {
    rule: "!has(self.timeZone) || has(self.schedule)",
    message: "timeZone needs a schedule",
    fieldPath: ".timeZone",
    holds: (s) => s.timeZone === undefined || s.schedule !== undefined,
  },
);

const count = () => z.number().int().nonnegative();

const runSummary = z.object({
  id: described(
    z.string().max(128),
    "Run identifier: when the run was started (UTC, e.g. 20261202T031500Z).",
  ),
  mode: described(z.enum(["Backup", "Compare", "Restore"]), "What the run did."),
  trigger: described(
    z.enum(["Schedule", "Manual", "Created"]),
    "What started it: the schedule, a new spec.manualTrigger, or the job's creation (a job without a schedule runs once).",
  ).optional(),
  startTime: described(z.iso.datetime(), "When the run started."),
  completionTime: described(z.iso.datetime(), "When the run ended.").optional(),
  result: described(z.enum(["Running", "Succeeded", "Failed"]), "How the run ended."),
  message: described(z.string().max(4096), "Why it failed, or a one-line summary.").optional(),
  reason: described(
    z.string().max(64),
    "For a failed attempt or run: a CamelCase reason (ReceiverUnreachable, DiskFull, CertificateInvalid, SourceSuspended, AgentGone, DeadlineExceeded, ...).",
  ).optional(),
  attempt: described(
    z.number().int().min(1),
    "The attempt in flight or the last one; a failed attempt is retried with back-off up to spec.backoffLimit times, resuming where it stopped.",
  ).optional(),
  jobId: described(
    z.string().max(128),
    "The id the agent knows the current attempt by; the operator re-attaches to it after a restart instead of starting it again.",
  ).optional(),
  agent: described(z.string().max(300), "The pod whose agent runs the attempt.").optional(),
  nextAttemptTime: described(
    z.iso.datetime(),
    "When the next attempt starts, while a failed attempt waits out its back-off.",
  ).optional(),
  version: described(
    z.string().max(128),
    "The version the run wrote (Backup) or read (Compare, Restore).",
  ).optional(),
  durationSeconds: described(z.number().nonnegative(), "How long the run took.").optional(),
  resumed: described(
    z.boolean(),
    "The run continued an interrupted session: only what was not yet durable was sent.",
  ).optional(),
  filesScanned: described(count(), "Files looked at on the source.").optional(),
  filesChanged: described(count(), "Files that were new or changed (Restore: written).").optional(),
  filesDeleted: described(
    count(),
    "Files removed since the previous version (Restore: extra files removed).",
  ).optional(),
  filesFiltered: described(count(), "Files left out by the filters.").optional(),
  filesStopped: described(
    count(),
    "Files stopped by the content firewall (they stay on the source).",
  ).optional(),
  filesUnreadable: described(
    count(),
    "Entries that could not be read; the version keeps their previous copy (the run is Succeeded with a message).",
  ).optional(),
  bytesSent: described(count(), "Bytes sent over the network.").optional(),
  bytesChanged: described(count(), "Bytes of changed content.").optional(),
});

export const backupJobStatus = z.object({
  phase: described(
    z.enum(["Pending", "Running", "Succeeded", "Failed", "Suspended"]),
    "A one-word summary of the latest run; the conditions carry the details.",
  ).optional(),
  siteGUID: described(z.string().max(63), "The site GUID in use.").optional(),
  sourceGUID: described(z.string().max(63), "The source GUID in use.").optional(),
  server: described(
    z.string().max(512),
    "namespace/name or endpoint of the server the latest run went to.",
  ).optional(),
  lastScheduleTime: described(z.iso.datetime(), "When a run was last started by the schedule.").optional(),
  nextScheduleTime: described(z.iso.datetime(), "When the schedule starts the next run.").optional(),
  lastSuccessfulTime: described(z.iso.datetime(), "When a run last succeeded.").optional(),
  lastManualTrigger: described(z.string().max(128), "The spec.manualTrigger value last acted on.").optional(),
  latestVersion: described(
    z.string().max(128),
    "The newest version on the server for this source.",
  ).optional(),
  progress: described(
    z.object({
      filesDone: described(z.number().int().nonnegative(), "Files processed so far.").optional(),
      filesTotal: described(
        z.number().int().nonnegative(),
        "Files to process, once the scan is done.",
      ).optional(),
      bytesDone: described(z.number().int().nonnegative(), "Bytes processed so far.").optional(),
      bytesTotal: described(
        z.number().int().nonnegative(),
        "Bytes to process, once the scan is done.",
      ).optional(),
      percent: described(z.number().int().min(0).max(100), "Progress of the current run.").optional(),
      phase: described(
        z.enum(["Starting", "Scanning", "Sending", "Committing", "Restoring"]),
        "What the agent is doing.",
      ).optional(),
      bytesPerSecond: described(count(), "Recent transfer rate.").optional(),
      etaSeconds: described(count(), "Estimated time left, from the recent rate.").optional(),
      updatedAt: described(z.iso.datetime(), "When the agent last reported progress.").optional(),
    }),
    "Progress of the run in flight.",
  ).optional(),
  compareResult: described(
    z.object({
      version: described(z.string().max(128), "The version compared with."),
      matched: described(z.boolean(), "Whether the source and the version hold the same files."),
      added: described(z.number().int().nonnegative(), "Files on the source and not in the version."),
      changed: described(z.number().int().nonnegative(), "Files that differ."),
      missing: described(z.number().int().nonnegative(), "Files in the version and no longer on the source."),
      metadata: described(
        z.number().int().nonnegative(),
        "Files with the same content but another mode or modification time.",
      ).optional(),
      differences: described(
        z
          .array(
            z.object({
              path: described(z.string().max(4096), "Path under source.path."),
              kind: described(z.enum(["added", "changed", "missing", "metadata"]), "How it differs."),
            }),
          )
          .max(20),
        "The first differences; the agent keeps the full list (GET /v1/jobs/{jobId}/report on its control port).",
      ).optional(),
    }),
    "Outcome of the latest Compare run.",
  ).optional(),
  lastRun: described(runSummary, "The latest run.").optional(),
  lastSuccessfulRun: described(runSummary, "The latest run that succeeded.").optional(),
  history: described(
    z.array(runSummary),
    "Finished runs, newest first, at most spec.historyLimit.",
  ).optional(),
  observedGeneration: observedGeneration().optional(),
  conditions: conditions().optional(),
});

export type BackupJobSpec = z.infer<typeof backupJobSpec>;
export type BackupJobStatus = z.infer<typeof backupJobStatus>;
