/**
 * X.509 issuing: a CA, and certificates it signs for servers and clients.
 *
 * One implementation serves the operator (its managed CA issues receiver and per-source
 * certificates), the agent's `offsite certs` helper and the test control plane. Keys are
 * ECDSA P-256: small, fast to generate, and accepted by Node's TLS 1.3 and by Kubernetes.
 * The subtle part: @peculiar/x509 resolves its ASN.1 codecs through tsyringe, which needs
 * the reflect-metadata polyfill loaded first.
 */
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { webcrypto, randomBytes } from "node:crypto";
import { isIP } from "node:net";

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

type CryptoKey = webcrypto.CryptoKey;

const ALGORITHM = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;

/** A certificate and its private key, both PEM encoded. */
export interface CertificateAndKey {
  certificatePem: string;
  privateKeyPem: string;
}

export interface CertificateRequest {
  commonName: string;
  /** Subject organisations; Kubernetes reads them as groups (e.g. system:masters). */
  organizations?: string[];
  /** Subject alternative names; IPs and DNS names are told apart automatically. */
  hosts?: string[];
  usage: "server" | "client" | "server-and-client";
  validForMs: number;
  /** Backdates notBefore so a peer whose clock is slightly behind accepts the certificate. */
  clockSkewMs?: number;
}

function serialNumber(): string {
  const bytes = randomBytes(16);
  bytes[0] = bytes[0]! & 0x7f; // a positive integer, as RFC 5280 requires
  return bytes.toString("hex");
}

function distinguishedName(commonName: string, organizations: string[] = []): string {
  const escape = (value: string) => value.replace(/([,+"\\<>;=])/g, "\\$1");
  return [`CN=${escape(commonName)}`, ...organizations.map((o) => `O=${escape(o)}`)].join(", ");
}

async function exportPrivateKey(key: CryptoKey): Promise<string> {
  return x509.PemConverter.encode(await webcrypto.subtle.exportKey("pkcs8", key), "PRIVATE KEY");
}

async function importPrivateKey(pem: string): Promise<CryptoKey> {
  const [der] = x509.PemConverter.decode(pem);
  if (!der) throw new Error("the CA private key is not a PEM-encoded PKCS#8 key");
  return webcrypto.subtle.importKey("pkcs8", der, ALGORITHM, false, ["sign"]);
}

/** A fresh PKCS#8 PEM private key (e.g. for signing service-account tokens). */
export async function createPrivateKey(): Promise<string> {
  const keys = await webcrypto.subtle.generateKey(ALGORITHM, true, ["sign", "verify"]);
  return exportPrivateKey(keys.privateKey);
}

/** Creates a self-signed CA. */
export async function createCertificateAuthority(
  commonName: string,
  validForMs: number,
): Promise<CertificateAndKey> {
  const keys = await webcrypto.subtle.generateKey(ALGORITHM, true, ["sign", "verify"]);
  const now = Date.now();
  const certificate = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialNumber(),
    name: distinguishedName(commonName),
    notBefore: new Date(now - 5 * 60_000),
    notAfter: new Date(now + validForMs),
    keys,
    signingAlgorithm: ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return {
    certificatePem: certificate.toString("pem"),
    privateKeyPem: await exportPrivateKey(keys.privateKey),
  };
}

/** Issues a certificate signed by `ca`. */
export async function issueCertificate(
  ca: CertificateAndKey,
  request: CertificateRequest,
): Promise<CertificateAndKey> {
  const caCertificate = new x509.X509Certificate(ca.certificatePem);
  const caKey = await importPrivateKey(ca.privateKeyPem);
  const keys = await webcrypto.subtle.generateKey(ALGORITHM, true, ["sign", "verify"]);
  const now = Date.now();
  const extendedUsages = {
    server: [x509.ExtendedKeyUsage.serverAuth],
    client: [x509.ExtendedKeyUsage.clientAuth],
    "server-and-client": [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth],
  }[request.usage];
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(
      x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment,
      true,
    ),
    new x509.ExtendedKeyUsageExtension(extendedUsages, false),
    await x509.AuthorityKeyIdentifierExtension.create(caCertificate, false),
  ];
  const hosts = request.hosts ?? [];
  if (hosts.length > 0) {
    extensions.push(
      new x509.SubjectAlternativeNameExtension(
        hosts.map((host) =>
          isIP(host) ? { type: "ip" as const, value: host } : { type: "dns" as const, value: host },
        ),
        false,
      ),
    );
  }
  const certificate = await x509.X509CertificateGenerator.create({
    serialNumber: serialNumber(),
    subject: distinguishedName(request.commonName, request.organizations),
    issuer: caCertificate.subject,
    notBefore: new Date(now - (request.clockSkewMs ?? 5 * 60_000)),
    notAfter: new Date(now + request.validForMs),
    publicKey: keys.publicKey,
    signingKey: caKey,
    signingAlgorithm: ALGORITHM,
    extensions,
  });
  return {
    certificatePem: certificate.toString("pem"),
    privateKeyPem: await exportPrivateKey(keys.privateKey),
  };
}

/** When a PEM certificate stops being valid. */
export function certificateNotAfter(certificatePem: string): Date {
  return new x509.X509Certificate(certificatePem).notAfter;
}
