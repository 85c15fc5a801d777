/**
 * The whole job in one request (contract/reports.ts jobRequest): what the agent beside the
 * data needs for one attempt, from the BackupJob's spec and what the operator resolved.
 * Pure, and checked against the contract's schema in its test, so what the operator sends
 * is what the agent accepts.
 */
import type { JobRequest } from "../../contract/reports.ts";
import { sizeToBytes } from "../../contract/units.ts";
import type { BackupJobSpec } from "../../crds/schema/backupJob.ts";
import type { RunSummary } from "./runs.ts";
import type { SourceCredentials } from "./sourceCertificate.ts";

const MODES = { Backup: "push", Compare: "compare", Restore: "restore" } as const;

export interface JobRequestInputs {
  spec: BackupJobSpec;
  run: RunSummary;
  site: string;
  source: string;
  /** The directory in the agent's view: source.path, or restore.path for a restore. */
  path: string;
  target: { endpoint: string; caPem: string };
  credentials: SourceCredentials;
  deadlineMs: number;
}

/** The directory a run works on, as the agent sees it. */
export function runPath(spec: BackupJobSpec): string {
  return spec.mode === "Restore" ? (spec.restore?.path ?? spec.source.path) : spec.source.path;
}

export function jobRequestFor(inputs: JobRequestInputs): JobRequest {
  const { spec, run } = inputs;
  const version =
    spec.mode === "Compare"
      ? spec.compare?.version
      : spec.mode === "Restore"
        ? spec.restore?.version
        : undefined;
  return {
    jobId: run.jobId!,
    mode: MODES[spec.mode],
    site: inputs.site,
    source: inputs.source,
    path: inputs.path,
    target: { endpoint: inputs.target.endpoint, caCertificate: inputs.target.caPem },
    credentials: { certificate: inputs.credentials.certificate, privateKey: inputs.credentials.privateKey },
    filters: {
      include: spec.filters.include,
      exclude: spec.filters.exclude,
      ...(spec.filters.maxFileSize !== undefined
        ? { maxFileSize: sizeToBytes(spec.filters.maxFileSize) }
        : {}),
    },
    contentFirewall: { ...spec.contentFirewall },
    checksum: spec.compare?.checksum ?? false,
    ...(version ? { version } : {}),
    ...(spec.mode === "Restore" ? { deleteExtra: spec.restore?.deleteExtraFiles ?? false } : {}),
    deadlineMs: Math.max(1, Math.floor(inputs.deadlineMs)),
  };
}
