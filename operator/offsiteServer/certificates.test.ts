import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import {
  caFromSecret,
  newCaSecret,
  newServingSecret,
  newSourceSecret,
  servingCertificateRenewal,
  tlsChecksum,
} from "./certificates.ts";
import { serverHosts } from "./names.ts";
import { anOffsiteServer } from "./fixtures.ts";

const DAY = 24 * 3600 * 1000;
const server = anOffsiteServer().identity();
const decode = (b64: string | undefined) => Buffer.from(b64 ?? "", "base64").toString();

describe("OffsiteServer certificates", () => {
  it("issue a CA and a serving certificate for the Service's names, in kubernetes.io/tls Secrets", async () => {
    const { secret: caSecret, ca } = await newCaSecret(server);
    assert.equal(caSecret.metadata?.name, "vault-ca");
    assert.equal(caSecret.type, "kubernetes.io/tls");
    assert.deepEqual(caFromSecret(caSecret), ca);
    const hosts = serverHosts("vault", "backups", "vault.example.com", "198.19.4.7");
    assert.deepEqual(serverHosts("vault", "backups", undefined, "None"), serverHosts("vault", "backups"));
    const serving = await newServingSecret(server, ca, hosts, 90 * DAY);
    assert.equal(serving.metadata?.name, "vault-tls");
    assert.equal(decode(serving.data?.["ca.crt"]), ca.certificatePem);
    const certificate = new X509Certificate(decode(serving.data?.["tls.crt"]));
    for (const host of ["vault.backups.svc", "vault.backups.svc.cluster.local", "vault.example.com"]) {
      assert.ok(certificate.checkHost(host), host);
    }
    // The Service's ClusterIP too, so `offsite push --to CLUSTER-IP:PORT` verifies.
    assert.equal(certificate.checkIP("198.19.4.7"), "198.19.4.7");
    assert.ok(certificate.verify(new X509Certificate(ca.certificatePem).publicKey));
    assert.equal(serving.metadata?.ownerReferences?.[0]?.kind, "OffsiteServer");
  });

  it("renew a serving certificate when missing, expiring, re-hosted or from another CA — and not otherwise", async () => {
    const { ca } = await newCaSecret(server);
    const hosts = serverHosts("vault", "backups");
    const now = new Date();
    assert.equal(servingCertificateRenewal(undefined, ca, hosts, now, DAY), "Missing");
    const fresh = await newServingSecret(server, ca, hosts, 90 * DAY);
    assert.equal(servingCertificateRenewal(fresh, ca, hosts, now, 15 * DAY), undefined);
    assert.equal(
      servingCertificateRenewal(fresh, ca, hosts, new Date(now.getTime() + 80 * DAY), 15 * DAY),
      "Expiring",
    );
    assert.equal(
      servingCertificateRenewal(fresh, ca, [...hosts, "new.example"], now, 15 * DAY),
      "HostsChanged",
    );
    const { ca: otherCa } = await newCaSecret(server);
    assert.equal(servingCertificateRenewal(fresh, otherCa, hosts, now, 15 * DAY), "CaChanged");
    const garbled = {
      ...fresh,
      data: { ...fresh.data, "tls.crt": Buffer.from("not a certificate").toString("base64") },
    };
    assert.equal(servingCertificateRenewal(garbled, ca, hosts, now, 15 * DAY), "Unreadable");
    assert.notEqual(tlsChecksum(fresh), tlsChecksum(undefined));
  });

  it("bind a source's client certificate to its site and source GUIDs", async () => {
    const { ca } = await newCaSecret(server);
    const secret = await newSourceSecret(server, ca, "site-uid-1", "source-uid-2", 90 * DAY);
    assert.match(secret.metadata!.name!, /^vault-src-[0-9a-f]{10}$/);
    const certificate = new X509Certificate(decode(secret.data?.["tls.crt"]));
    assert.match(certificate.subject, /CN=source-uid-2/);
    assert.match(certificate.subject, /O=site-uid-1/);
    assert.equal(secret.metadata?.annotations?.["offsite.dev/source"], "source-uid-2");
  });

  it("treat an unreadable CA Secret as missing", () => {
    assert.equal(caFromSecret(undefined), undefined);
    assert.equal(
      caFromSecret({ data: { "tls.crt": Buffer.from("junk").toString("base64"), "tls.key": "eA==" } }),
      undefined,
    );
  });
});
