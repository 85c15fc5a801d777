/**
 * The operator's metrics, in one prom-client registry served on /metrics. Names follow
 * Prometheus conventions: `offsite_` prefix, base units in the name, `_total` counters,
 * and each answers a question someone asks at 3 a.m. ("is the operator the leader?",
 * "which servers are not ready?", "when does a certificate expire?").
 *
 * The subtle point: a labelled series does not exist until it is first touched, and an
 * alert on rate() or absent() cannot tell "never happened" from "not exported".
 * startSeries() therefore creates every series whose label values are known up front
 * (kinds × results, kinds × error reasons, watched resources) at 0; only per-object
 * series (namespace/name) appear with their object.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

/** The `result` label values of offsite_reconcile_total. */
const RECONCILE_RESULTS = ["success", "error"] as const;

export interface KnownSeries {
  kinds: readonly { kind: string; errorReasons: readonly string[] }[];
  /** Watched resources, the `resource` label of offsite_watch_restarts_total. */
  resources: readonly string[];
}

export class OperatorMetrics {
  readonly registry = new Registry();

  readonly reconcileTotal = new Counter({
    name: "offsite_reconcile_total",
    help: "Reconciles run, by kind and result (success or error).",
    labelNames: ["kind", "result"] as const,
    registers: [this.registry],
  });
  readonly reconcileErrorsTotal = new Counter({
    name: "offsite_reconcile_errors_total",
    help: "Reconciles that failed and will be retried, by kind and reason.",
    labelNames: ["kind", "reason"] as const,
    registers: [this.registry],
  });
  readonly reconcileDuration = new Histogram({
    name: "offsite_reconcile_duration_seconds",
    help: "How long one reconcile took, by kind.",
    labelNames: ["kind"] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly workQueueDepth = new Gauge({
    name: "offsite_workqueue_depth",
    help: "Objects waiting to be reconciled, by kind.",
    labelNames: ["kind"] as const,
    registers: [this.registry],
  });
  readonly isLeader = new Gauge({
    name: "offsite_leader_is_leader",
    help: "1 while this operator process holds the leader Lease and reconciles, else 0.",
    registers: [this.registry],
  });
  readonly leaderTransitionsTotal = new Counter({
    name: "offsite_leader_transitions_total",
    help: "Times this process became or stopped being the leader.",
    registers: [this.registry],
  });
  readonly watchRestartsTotal = new Counter({
    name: "offsite_watch_restarts_total",
    help: "Times a list/watch of a resource failed and was restarted, by resource.",
    labelNames: ["resource"] as const,
    registers: [this.registry],
  });
  readonly serverReady = new Gauge({
    name: "offsite_offsiteserver_ready",
    help: "1 when the OffsiteServer is Ready, else 0.",
    labelNames: ["namespace", "name"] as const,
    registers: [this.registry],
  });
  readonly serverCapacityBytes = new Gauge({
    name: "offsite_offsiteserver_capacity_bytes",
    help: "Size of the OffsiteServer's data volume.",
    labelNames: ["namespace", "name"] as const,
    registers: [this.registry],
  });
  readonly serverUsedBytes = new Gauge({
    name: "offsite_offsiteserver_used_bytes",
    help: "Bytes in use on the OffsiteServer's data volume, as the receiver reports.",
    labelNames: ["namespace", "name"] as const,
    registers: [this.registry],
  });
  readonly serverSources = new Gauge({
    name: "offsite_offsiteserver_sources",
    help: "Sources of an OffsiteServer by state (Online, Offline, NeverCheckedIn, Suspended).",
    labelNames: ["namespace", "name", "state"] as const,
    registers: [this.registry],
  });
  readonly certificateExpiry = new Gauge({
    name: "offsite_certificate_expiry_timestamp_seconds",
    help: "When a certificate the operator issued expires (Unix time), by Secret.",
    labelNames: ["namespace", "secret"] as const,
    registers: [this.registry],
  });

  readonly backupRunsTotal = new Counter({
    name: "offsite_backup_runs_total",
    help: "Finished BackupJob runs, by job and result (succeeded, failed).",
    labelNames: ["namespace", "name", "mode", "result"] as const,
    registers: [this.registry],
  });
  readonly backupRunDuration = new Histogram({
    name: "offsite_backup_run_duration_seconds",
    help: "How long a finished BackupJob run took, by job.",
    labelNames: ["namespace", "name"] as const,
    buckets: [1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 12 * 3600],
    registers: [this.registry],
  });
  readonly backupBytesSentTotal = new Counter({
    name: "offsite_backup_bytes_sent_total",
    help: "Bytes BackupJob runs sent over the network to their server, by job.",
    labelNames: ["namespace", "name"] as const,
    registers: [this.registry],
  });
  readonly backupFirewallStoppedTotal = new Counter({
    name: "offsite_backup_firewall_stopped_files_total",
    help: "Files the content firewall stopped from leaving the source, by job.",
    labelNames: ["namespace", "name"] as const,
    registers: [this.registry],
  });
  readonly backupLastSuccess = new Gauge({
    name: "offsite_backup_last_success_timestamp_seconds",
    help: "When a BackupJob's run last succeeded (Unix time); alert on time() minus this.",
    labelNames: ["namespace", "name"] as const,
    registers: [this.registry],
  });
  readonly backupReady = new Gauge({
    name: "offsite_backup_ready",
    help: "1 when the BackupJob is Ready (target, certificates and agents in place), else 0.",
    labelNames: ["namespace", "name"] as const,
    registers: [this.registry],
  });
  readonly backupRunning = new Gauge({
    name: "offsite_backup_running",
    help: "1 while a run of the BackupJob is in flight (including its back-off), else 0.",
    labelNames: ["namespace", "name"] as const,
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: "offsite_operator_" });
  }

  /** Creates every series of `known` at 0; once, at start-up (a histogram is reset). */
  startSeries(known: KnownSeries): void {
    for (const { kind, errorReasons } of known.kinds) {
      for (const result of RECONCILE_RESULTS) this.reconcileTotal.inc({ kind, result }, 0);
      for (const reason of errorReasons) this.reconcileErrorsTotal.inc({ kind, reason }, 0);
      this.reconcileDuration.zero({ kind });
      this.workQueueDepth.inc({ kind }, 0);
    }
    for (const resource of known.resources) this.watchRestartsTotal.inc({ resource }, 0);
  }

  readonly replicationLag = new Histogram({
    name: "offsite_replication_lag_seconds",
    help: "Change on the primary to durable on the standby, of the last batch each poll of the primary's agent saw, by pair.",
    labelNames: ["namespace", "name"] as const,
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 15, 60],
    registers: [this.registry],
  });
  readonly replicationPending = new Gauge({
    name: "offsite_replication_pending_changes",
    help: "Changes seen on the primary and not yet durable on the standby, by pair.",
    labelNames: ["namespace", "name"] as const,
    registers: [this.registry],
  });
  readonly replicationBytesSent = new Gauge({
    name: "offsite_replication_bytes_sent",
    help: "Bytes the primary's agent sent to the standby in its current session, by pair.",
    labelNames: ["namespace", "name"] as const,
    registers: [this.registry],
  });
  readonly replicationFirewallStopped = new Gauge({
    name: "offsite_replication_firewall_stopped_files",
    help: "Files the content firewall stopped from crossing, as the pair's agents count them, by pair.",
    labelNames: ["namespace", "name"] as const,
    registers: [this.registry],
  });
  readonly replicationInSync = new Gauge({
    name: "offsite_replication_in_sync",
    help: "1 when the standby has every change of the primary, else 0.",
    labelNames: ["namespace", "name"] as const,
    registers: [this.registry],
  });

  /** Drops the per-object series of a deleted ReplicationPair. */
  forgetReplicationPair(namespace: string, name: string): void {
    for (const metric of [
      this.replicationLag,
      this.replicationPending,
      this.replicationBytesSent,
      this.replicationFirewallStopped,
      this.replicationInSync,
    ])
      metric.remove({ namespace, name });
  }

  /** Creates a BackupJob's series at 0 (so absent() alerts and rate() work from its first run). */
  startBackupSeries(namespace: string, name: string, mode: string): void {
    for (const result of ["succeeded", "failed"])
      this.backupRunsTotal.inc({ namespace, name, mode, result }, 0);
    this.backupBytesSentTotal.inc({ namespace, name }, 0);
    this.backupFirewallStoppedTotal.inc({ namespace, name }, 0);
  }

  /** Drops the per-object series of a deleted BackupJob. */
  forgetBackupJob(namespace: string, name: string): void {
    for (const mode of ["Backup", "Compare", "Restore"])
      for (const result of ["succeeded", "failed"])
        this.backupRunsTotal.remove({ namespace, name, mode, result });
    for (const metric of [
      this.backupRunDuration,
      this.backupBytesSentTotal,
      this.backupFirewallStoppedTotal,
      this.backupLastSuccess,
      this.backupReady,
      this.backupRunning,
    ])
      metric.remove({ namespace, name });
  }

  /** Drops the per-object series of a deleted OffsiteServer. */
  forgetServer(namespace: string, name: string): void {
    for (const gauge of [this.serverReady, this.serverCapacityBytes, this.serverUsedBytes]) {
      gauge.remove({ namespace, name });
    }
    for (const state of ["Online", "Offline", "NeverCheckedIn", "Suspended"]) {
      this.serverSources.remove({ namespace, name, state });
    }
  }
}
