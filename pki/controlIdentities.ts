/**
 * The control channel's two identities (agent/CONTROL.md), both issued by the operator's
 * CA: the operator's client certificate (CN and O `offsite-operator`, the only subject an
 * agent takes jobs from) and the agents' control certificate (CN `offsite-agent`). The
 * agent's carries no SAN on purpose: the operator reaches agents by pod IP, which changes
 * with every pod, so it verifies the chain to its CA and the CN instead of a name.
 */
import { AGENT_CONTROL_COMMON_NAME, OPERATOR_CONTROL_IDENTITY } from "../contract/reports.ts";
import { issueCertificate, type CertificateAndKey } from "./certificates.ts";

/** The operator's control client certificate: CN = O = offsite-operator, clientAuth only. */
export function issueOperatorControlCertificate(
  operatorCa: CertificateAndKey,
  validForMs: number,
): Promise<CertificateAndKey> {
  return issueCertificate(operatorCa, {
    commonName: OPERATOR_CONTROL_IDENTITY.commonName,
    organizations: [OPERATOR_CONTROL_IDENTITY.organization],
    usage: "client",
    validForMs,
  });
}

/**
 * An agent's control certificate: CN = offsite-agent, serverAuth (its control endpoint)
 * and clientAuth, no subject alternative names.
 */
export function issueAgentControlCertificate(
  operatorCa: CertificateAndKey,
  validForMs: number,
): Promise<CertificateAndKey> {
  return issueCertificate(operatorCa, {
    commonName: AGENT_CONTROL_COMMON_NAME,
    usage: "server-and-client",
    validForMs,
  });
}
