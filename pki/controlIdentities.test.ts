import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { createCertificateAuthority } from "./certificates.ts";
import { issueAgentControlCertificate, issueOperatorControlCertificate } from "./controlIdentities.ts";

const DAY = 24 * 3600 * 1000;
const CLIENT_AUTH = "1.3.6.1.5.5.7.3.2";
const SERVER_AUTH = "1.3.6.1.5.5.7.3.1";

describe("control identities", () => {
  it("issue the operator's client certificate with CN and O offsite-operator, for clients only", async () => {
    const ca = await createCertificateAuthority("offsite operator CA", DAY);
    const operator = new X509Certificate((await issueOperatorControlCertificate(ca, DAY)).certificatePem);
    assert.equal(operator.subject, "CN=offsite-operator\nO=offsite-operator");
    assert.deepEqual(operator.keyUsage, [CLIENT_AUTH]);
    assert.ok(operator.verify(new X509Certificate(ca.certificatePem).publicKey));
    assert.ok(Math.abs(operator.validToDate.getTime() - (Date.now() + DAY)) < 60_000);
  });

  it("issue the agent's control certificate with CN offsite-agent, server and client, no SAN", async () => {
    const ca = await createCertificateAuthority("offsite operator CA", DAY);
    const agent = new X509Certificate((await issueAgentControlCertificate(ca, DAY)).certificatePem);
    assert.equal(agent.subject, "CN=offsite-agent");
    assert.deepEqual([...(agent.keyUsage ?? [])].sort(), [SERVER_AUTH, CLIENT_AUTH].sort());
    assert.equal(agent.subjectAltName, undefined);
    assert.ok(agent.verify(new X509Certificate(ca.certificatePem).publicKey));
  });
});
