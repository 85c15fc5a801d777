import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { createServer, connect, type TLSSocket } from "node:tls";
import type { AddressInfo } from "node:net";
import { certificateNotAfter, createCertificateAuthority, issueCertificate } from "./certificates.ts";

const DAY = 24 * 3600 * 1000;

describe("certificate issuing", () => {
  it("issues certificates that chain to their CA and carry the requested names", async () => {
    const ca = await createCertificateAuthority("offsite-test-ca", DAY);
    const server = await issueCertificate(ca, {
      commonName: "receiver",
      hosts: ["receiver.ns.svc", "127.0.0.1"],
      usage: "server",
      validForMs: DAY,
    });
    const parsed = new X509Certificate(server.certificatePem);
    assert.ok(parsed.verify(new X509Certificate(ca.certificatePem).publicKey), "signed by the CA");
    assert.ok(parsed.checkHost("receiver.ns.svc"));
    assert.ok(parsed.checkIP("127.0.0.1"));
    assert.equal(parsed.checkHost("other.example"), undefined);
    assert.ok(new X509Certificate(ca.certificatePem).ca);
    assert.ok(!parsed.ca);
    const notAfter = certificateNotAfter(server.certificatePem).getTime();
    assert.ok(Math.abs(notAfter - (Date.now() + DAY)) < 60_000);
  });

  it("puts organisations in the subject (Kubernetes groups)", async () => {
    const ca = await createCertificateAuthority("ca", DAY);
    const admin = await issueCertificate(ca, {
      commonName: "admin",
      organizations: ["system:masters"],
      usage: "client",
      validForMs: DAY,
    });
    assert.match(new X509Certificate(admin.certificatePem).subject, /O=system:masters/);
  });

  it("works for a real mutually authenticated TLS 1.3 connection, and refuses another CA's client", async () => {
    const ca = await createCertificateAuthority("ca", DAY);
    const otherCa = await createCertificateAuthority("other-ca", DAY);
    const serverCert = await issueCertificate(ca, {
      commonName: "s",
      hosts: ["127.0.0.1"],
      usage: "server",
      validForMs: DAY,
    });
    const goodClient = await issueCertificate(ca, { commonName: "c", usage: "client", validForMs: DAY });
    const strangerClient = await issueCertificate(otherCa, {
      commonName: "x",
      usage: "client",
      validForMs: DAY,
    });

    const served: string[] = [];
    const server = createServer(
      {
        cert: serverCert.certificatePem,
        key: serverCert.privateKeyPem,
        ca: ca.certificatePem,
        requestCert: true,
        rejectUnauthorized: true,
        minVersion: "TLSv1.3",
      },
      (socket) => {
        served.push((socket.getPeerCertificate() as { subject: { CN: string } }).subject.CN);
        socket.end(`hello ${served.at(-1)}`);
      },
    );
    const refused: string[] = [];
    server.on("tlsClientError", (error: Error) => refused.push(error.message));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as AddressInfo).port;
    const talk = (client: { certificatePem: string; privateKeyPem: string }) =>
      new Promise<string>((resolve, reject) => {
        const socket: TLSSocket = connect({
          host: "127.0.0.1",
          port,
          ca: ca.certificatePem,
          cert: client.certificatePem,
          key: client.privateKeyPem,
          servername: "127.0.0.1",
        });
        let data = "";
        socket.on("data", (chunk: Buffer) => (data += chunk.toString()));
        socket.on("end", () => resolve(data));
        // In TLS 1.3 the server checks the client's certificate after the client has
        // finished its handshake, so a refusal shows up as an error or a bare close.
        socket.on("error", reject);
        socket.on("close", () => resolve(data));
      });
    try {
      assert.equal(await talk(goodClient), "hello c");
      const strangerGot = await talk(strangerClient).catch((error: Error) => `refused: ${error.message}`);
      assert.doesNotMatch(strangerGot, /hello/);
      assert.equal(refused.length, 1, "the server refused the stranger's handshake");
      assert.deepEqual(served, ["c"], "only the client with a certificate from our CA was served");
    } finally {
      server.close();
    }
  });
});
