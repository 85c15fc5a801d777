import { describe, it } from "node:test";
import assert from "node:assert/strict";
import type { V1Secret } from "@kubernetes/client-node";
import { certificateNotAfter, createCertificateAuthority, issueCertificate } from "../../pki/certificates.ts";
import {
  ISSUED_FOR_ANNOTATION,
  decodeSecretKey,
  encodeSecretData,
  renewalDueAt,
  renewalReason,
} from "./tlsSecrets.ts";

const DAY = 24 * 3600_000;
const validForMs = 90 * DAY;
const issuedFor = "offsite-agent";

const ca = await createCertificateAuthority("offsite-operator-ca", 10 * 365 * DAY);
const otherCa = await createCertificateAuthority("offsite-operator-ca", 10 * 365 * DAY);
const issued = await issueCertificate(ca, { commonName: issuedFor, usage: "server-and-client", validForMs });
const notAfter = certificateNotAfter(issued.certificatePem);

function aSecret(
  data: Partial<Record<"tls.crt" | "tls.key" | "ca.crt", string>> = {},
  annotations: Record<string, string> = { [ISSUED_FOR_ANNOTATION]: issuedFor },
): V1Secret {
  return {
    metadata: { name: "offsite-agent-control", annotations },
    type: "kubernetes.io/tls",
    data: encodeSecretData({
      "tls.crt": issued.certificatePem,
      "tls.key": issued.privateKeyPem,
      "ca.crt": ca.certificatePem,
      ...data,
    }),
  };
}

const reasonAt = (secret: V1Secret | undefined, now = new Date()) =>
  renewalReason(secret, ca.certificatePem, issuedFor, validForMs, now);

describe("renewing an issued TLS Secret", () => {
  it("keeps a fresh certificate of the current CA for the same names", () => {
    assert.equal(reasonAt(aSecret()), undefined);
  });

  it("issues one for a missing Secret, certificate or key", () => {
    assert.equal(reasonAt(undefined), "Missing");
    assert.equal(reasonAt({ metadata: { name: "x" } }), "Missing");
    assert.equal(reasonAt({ metadata: { name: "x" }, data: {} }), "Missing");
    const withoutKey = aSecret();
    delete withoutKey.data!["tls.key"];
    assert.equal(reasonAt(withoutKey), "Missing");
    assert.equal(reasonAt(aSecret({ "tls.crt": "" })), "Missing");
  });

  it("issues one for a certificate that cannot be read", () => {
    assert.equal(reasonAt(aSecret({ "tls.crt": "not a certificate" })), "Unreadable");
    assert.equal(
      reasonAt(aSecret({ "tls.crt": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n" })),
      "Unreadable",
    );
  });

  it("issues one when the CA changed", () => {
    assert.equal(reasonAt(aSecret({ "ca.crt": otherCa.certificatePem })), "CaChanged");
    const withoutCa = aSecret();
    delete withoutCa.data!["ca.crt"];
    assert.equal(reasonAt(withoutCa), "CaChanged");
    // What the Secret was issued for matters only once the CA is the current one.
    assert.equal(reasonAt(aSecret({ "ca.crt": otherCa.certificatePem }, {})), "CaChanged");
  });

  it("issues one when the Secret was edited to hold another CA's certificate beside the right ca.crt", async () => {
    const foreign = await issueCertificate(otherCa, {
      commonName: issuedFor,
      usage: "server-and-client",
      validForMs,
    });
    assert.equal(
      reasonAt(aSecret({ "tls.crt": foreign.certificatePem, "tls.key": foreign.privateKeyPem })),
      "CaChanged",
    );
  });

  it("issues one when it was issued for other names", () => {
    assert.equal(reasonAt(aSecret({}, { [ISSUED_FOR_ANNOTATION]: "someone-else" })), "SubjectChanged");
    assert.equal(reasonAt(aSecret({}, {})), "SubjectChanged");
    const bare = aSecret();
    delete bare.metadata!.annotations;
    assert.equal(reasonAt(bare), "SubjectChanged");
  });

  it("issues one when a third of its life or less is left", () => {
    const third = validForMs / 3;
    assert.equal(reasonAt(aSecret(), new Date(notAfter.getTime() - third - 1000)), undefined);
    assert.equal(reasonAt(aSecret(), new Date(notAfter.getTime() - third)), "Expiring");
    assert.equal(reasonAt(aSecret(), new Date(notAfter.getTime() + DAY)), "Expiring");
  });

  it("is due for renewal a third of its life before it expires", () => {
    assert.equal(renewalDueAt(aSecret(), validForMs).getTime(), notAfter.getTime() - validForMs / 3);
    assert.equal(reasonAt(aSecret(), renewalDueAt(aSecret(), validForMs)), "Expiring");
  });

  it("stores Secret data as base64 and reads it back", () => {
    const data = encodeSecretData({ "tls.crt": "pem ✓", empty: "" });
    assert.equal(data["tls.crt"], Buffer.from("pem ✓").toString("base64"));
    const secret: V1Secret = { data };
    assert.equal(decodeSecretKey(secret, "tls.crt"), "pem ✓");
    assert.equal(decodeSecretKey(secret, "empty"), undefined);
    assert.equal(decodeSecretKey(secret, "absent"), undefined);
    assert.equal(decodeSecretKey(undefined, "tls.crt"), undefined);
  });
});
