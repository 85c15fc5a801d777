/**
 * Names shared by everything the operator deploys an `offsite agent` with: the backup
 * sidecar (injected by the webhook), the mover pods of BackupJobs, and later the agents
 * of a ReplicationPair. One place, so the webhook, the BackupJob controller and the tests
 * agree on what a pod must look like for the operator to reach its agent.
 */
import { DEFAULT_HEALTH_PORT } from "../../contract/roles.ts";
import { DEFAULT_CONTROL_PORT } from "../../contract/reports.ts";

/** The operator's CA: a Secret (tls.crt, tls.key) in the operator's own namespace. */
export const OPERATOR_CA_SECRET = "offsite-operator-ca";

/**
 * In every namespace with agents: tls.crt and tls.key (the agents' control serving
 * certificate, CN offsite-agent, from the operator's CA) and ca.crt (the operator's CA,
 * which client certificates must chain to). Mounted `optional`, so a pod never waits for it.
 */
export const AGENT_CONTROL_SECRET = "offsite-agent-control";
/** Where an agent container has that Secret mounted (`offsite agent --control-certs`). */
export const AGENT_CONTROL_CERTS_DIR = "/etc/offsite/control";

/** The sidecar's container name (BackupJob spec.source.containerName's default). */
export const SIDECAR_CONTAINER = "offsite-agent";
/** The pod label that opts a pod into sidecar injection (the webhook's objectSelector). */
export const INJECT_LABEL = "offsite.dev/inject";
export const INJECT_LABEL_VALUE = "true";
/** Set by the webhook on a pod it injected: the BackupJobs whose selector matched, comma-separated. */
export const INJECTED_ANNOTATION = "offsite.dev/agent-injected-for";

/** The agent's ports inside its pod (the control endpoint the operator calls, its probes). */
export const AGENT_CONTROL_PORT = DEFAULT_CONTROL_PORT;
export const AGENT_HEALTH_PORT = DEFAULT_HEALTH_PORT;
