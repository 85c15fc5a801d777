/**
 * What each of a pair's agents is told to be (PUT /v1/replication), as a pure function of
 * the spec: the primary replicates its side's `path` to the standby's agent through the
 * pair's standby Service; the standby keeps its side's `path` and listens on the
 * replication port. Both carry the pair's GUIDs, epoch, CA and their own certificate, and
 * the same filters and content firewall (the standby's own firewall is on when the pair's
 * is). Sent on every reconcile: an agent that already plays exactly this role changes
 * nothing, so this must not vary between reconciles (no timestamps, no fresh keys).
 */
import { DEFAULT_REPLICATION_PORT, type ReplicationRequest } from "../../contract/reports.ts";
import { durationToMs, sizeToBytes } from "../../contract/units.ts";
import type { ReplicationPairSpec } from "../../crds/schema/replicationPair.ts";
import { AGENT_STATE_DIR } from "../webhook/sidecarInjection.ts";
import type { PairCredentials } from "./pairCredentials.ts";

export interface RoleInputs {
  spec: ReplicationPairSpec;
  pair: string;
  namespace: string;
  site: string;
  pairGuid: string;
  epoch: number;
  standbyService: string;
  credentials: PairCredentials;
}

export function roleRequests(inputs: RoleInputs): {
  primary: ReplicationRequest;
  standby: ReplicationRequest;
} {
  const { spec } = inputs;
  const common = {
    pair: inputs.pairGuid,
    site: inputs.site,
    epoch: inputs.epoch,
    caCertificate: inputs.credentials.ca,
    filters: {
      include: spec.filters.include,
      exclude: spec.filters.exclude,
      ...(spec.filters.maxFileSize !== undefined
        ? { maxFileSize: sizeToBytes(spec.filters.maxFileSize) }
        : {}),
    },
    contentFirewall: { ...spec.contentFirewall },
    batchWindowMs: Math.max(1, Math.min(60_000, Math.round(durationToMs(spec.batchWindow)))),
  };
  return {
    primary: {
      ...common,
      role: "primary",
      path: spec.primary.path,
      credentials: inputs.credentials.primary,
      standby: { endpoint: `${inputs.standbyService}.${inputs.namespace}.svc:${DEFAULT_REPLICATION_PORT}` },
      stateDir: `${AGENT_STATE_DIR}/${inputs.pair}`,
    },
    standby: {
      ...common,
      role: "standby",
      path: spec.standby.path,
      credentials: inputs.credentials.standby,
      listenPort: DEFAULT_REPLICATION_PORT,
    },
  };
}
