/**
 * The operator's client certificate for agents' control endpoints (OPERATOR_CONTROL_IDENTITY),
 * issued in memory from the operator's CA and issued again a day before it expires. Never
 * stored: every replica makes its own, and a leaked one is worth a week at most.
 */
import { certificateNotAfter, type CertificateAndKey } from "../../pki/certificates.ts";
import { issueOperatorControlCertificate } from "../../pki/controlIdentities.ts";

const VALIDITY_MS = 7 * 24 * 3600 * 1000;
const RENEW_BEFORE_MS = 24 * 3600 * 1000;

export interface ControlCredentials {
  cert: string;
  key: string;
  /** The CA agents' control serving certificates chain to. */
  ca: string;
}

export class OperatorControlCredentials {
  private current: { credentials: ControlCredentials; renewAt: number } | undefined;
  private pending: Promise<ControlCredentials> | undefined;
  private readonly ca: () => CertificateAndKey;

  constructor(ca: () => CertificateAndKey) {
    this.ca = ca;
  }

  async get(now = Date.now()): Promise<ControlCredentials> {
    const ca = this.ca();
    if (this.current && now < this.current.renewAt && this.current.credentials.ca === ca.certificatePem)
      return this.current.credentials;
    this.pending ??= this.issue(ca).finally(() => (this.pending = undefined));
    return this.pending;
  }

  private async issue(ca: CertificateAndKey): Promise<ControlCredentials> {
    const issued = await issueOperatorControlCertificate(ca, VALIDITY_MS);
    const credentials = { cert: issued.certificatePem, key: issued.privateKeyPem, ca: ca.certificatePem };
    this.current = {
      credentials,
      renewAt: certificateNotAfter(issued.certificatePem).getTime() - RENEW_BEFORE_MS,
    };
    return credentials;
  }
}
