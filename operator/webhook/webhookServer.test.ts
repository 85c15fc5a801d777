/**
 * The webhook server over real HTTPS with stand-in lookups: AdmissionReview v1 in and
 * out, the patch the API server applies, and the rule that every answer is "allowed" —
 * a failing or hanging lookup, a bad request, a pod that is not selected. Its serving
 * certificate chains to the operator CA with the configured names and is renewed in memory.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { request } from "node:https";
import { connect } from "node:tls";
import type { V1Pod } from "@kubernetes/client-node";
import { pino } from "pino";
import { Registry } from "prom-client";
import { createCertificateAuthority, type CertificateAndKey } from "../../pki/certificates.ts";
import { INJECTED_ANNOTATION, SIDECAR_CONTAINER } from "../agentControl/names.ts";
import { SETTINGS, aJob, aPod } from "./fixtures.ts";
import type { InjectionJob, PodSecurityLevel } from "./sidecarInjection.ts";
import { WebhookServer, type AdmissionLookups, type AdmissionResponse } from "./webhookServer.ts";

const logger = pino({ level: "silent" });
let ca: CertificateAndKey;
let server: WebhookServer;
let lookups: AdmissionLookups;
const registry = new Registry();

function post(body: unknown, path = "/mutate-pods"): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        port: server.port,
        path,
        method: "POST",
        ca: ca.certificatePem,
        servername: "localhost",
      },
      (res) => {
        let text = "";
        res.on("data", (chunk: Buffer) => (text += chunk.toString()));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on("error", reject);
    req.end(typeof body === "string" ? body : JSON.stringify(body));
  });
}

async function admit(pod: V1Pod, extra: Record<string, unknown> = {}): Promise<AdmissionResponse> {
  const { status, body } = await post({
    apiVersion: "admission.k8s.io/v1",
    kind: "AdmissionReview",
    request: {
      uid: "0f7c5e2a-uid",
      kind: { group: "", version: "v1", kind: "Pod" },
      operation: "CREATE",
      namespace: "shop",
      object: pod,
      ...extra,
    },
  });
  assert.equal(status, 200, body);
  const review = JSON.parse(body) as { apiVersion: string; kind: string; response: AdmissionResponse };
  assert.equal(review.apiVersion, "admission.k8s.io/v1");
  assert.equal(review.kind, "AdmissionReview");
  assert.equal(review.response.uid, "0f7c5e2a-uid");
  assert.equal(review.response.allowed, true, "every answer allows the pod");
  return review.response;
}

const fixed = (jobs: InjectionJob[], level: PodSecurityLevel = "privileged"): AdmissionLookups => ({
  backupJobs: async () => jobs,
  podSecurity: async () => level,
});

describe("the webhook server", () => {
  before(async () => {
    ca = await createCertificateAuthority("test operator CA", 3600_000);
    lookups = fixed([aJob("shop-nightly", { matchLabels: { app: "shop" } })]);
    server = new WebhookServer({
      address: "127.0.0.1:0",
      ca,
      hosts: ["offsite-operator-webhook.offsite-system.svc", "localhost", "127.0.0.1"],
      lookups: { backupJobs: (ns) => lookups.backupJobs(ns), podSecurity: (ns) => lookups.podSecurity(ns) },
      sidecar: SETTINGS,
      logger,
      registry,
      lookupTimeoutMs: 300,
    });
    await server.start();
  });
  after(async () => {
    await server.stop();
  });

  it("answers a selected pod with a JSON Patch that adds the sidecar", async () => {
    lookups = fixed([aJob("shop-nightly", { matchLabels: { app: "shop" } })]);
    const response = await admit(aPod());
    assert.equal(response.patchType, "JSONPatch");
    const patch = JSON.parse(Buffer.from(response.patch!, "base64").toString("utf8")) as {
      path: string;
      value: unknown;
    }[];
    const init = patch.find((p) => p.path === "/spec/initContainers")?.value as { name: string }[];
    assert.deepEqual(
      init.map((c) => c.name),
      [SIDECAR_CONTAINER],
    );
    assert.deepEqual(patch.find((p) => p.path === "/metadata/annotations")?.value, {
      [INJECTED_ANNOTATION]: "shop-nightly",
    });
    assert.equal(response.warnings, undefined);
  });

  it("answers without a patch for a pod no job selects, an update, or another kind", async () => {
    assert.deepEqual(await admit(aPod({ labels: { app: "blog" } })), { uid: "0f7c5e2a-uid", allowed: true });
    assert.deepEqual(await admit(aPod(), { operation: "UPDATE" }), { uid: "0f7c5e2a-uid", allowed: true });
    assert.deepEqual(await admit(aPod(), { kind: { group: "apps", version: "v1", kind: "Deployment" } }), {
      uid: "0f7c5e2a-uid",
      allowed: true,
    });
  });

  it("allows the pod unchanged, with a warning, when a lookup fails or hangs", async () => {
    lookups = { ...fixed([]), backupJobs: () => Promise.reject(new Error("the API server is away")) };
    const failed = await admit(aPod());
    assert.equal(failed.patch, undefined);
    assert.match(failed.warnings?.[0] ?? "", /not injected: the API server is away/);

    lookups = { ...fixed([]), backupJobs: () => new Promise(() => undefined) };
    const started = Date.now();
    const hung = await admit(aPod());
    assert.ok(Date.now() - started < 2000, "cut off well before the API server's 5 s");
    assert.equal(hung.patch, undefined);
    assert.match(hung.warnings?.[0] ?? "", /listing BackupJobs and ReplicationPairs took longer than 300 ms/);

    lookups = {
      ...fixed([aJob("shop-nightly", { matchLabels: { app: "shop" } })]),
      podSecurity: () => Promise.reject(new Error("forbidden")),
    };
    assert.match((await admit(aPod())).warnings?.[0] ?? "", /forbidden/);
    const metrics = await registry.getSingleMetricAsString("offsite_webhook_admissions_total");
    assert.match(metrics, /result="error"\} 3/);
  });

  it("warns about a selected pod it declines, and stays silent about one that has the agent", async () => {
    lookups = fixed([aJob("shop-nightly", { matchLabels: { app: "shop" } })]);
    const windows = aPod({ spec: { os: { name: "windows" }, containers: [{ name: "app", image: "app" }] } });
    assert.match((await admit(windows)).warnings?.[0] ?? "", /Windows/);
    const already = aPod();
    already.spec!.initContainers = [{ name: SIDECAR_CONTAINER, image: "agent", restartPolicy: "Always" }];
    assert.deepEqual(await admit(already), { uid: "0f7c5e2a-uid", allowed: true });
  });

  it("refuses what is not an AdmissionReview (the API server then applies failurePolicy Ignore)", async () => {
    assert.equal((await post("not json")).status, 400);
    assert.equal((await post({ kind: "AdmissionReview" })).status, 400);
    assert.equal((await post({}, "/other")).status, 404);
  });

  it("serves a certificate from the operator CA for its names, and renews it in memory", async () => {
    const peer = async () =>
      new Promise<X509Certificate>((resolve, reject) => {
        const socket = connect(
          { host: "127.0.0.1", port: server.port, ca: ca.certificatePem, servername: "localhost" },
          () => {
            const certificate = socket.getPeerX509Certificate();
            socket.end();
            if (certificate) resolve(certificate);
            else reject(new Error("no certificate"));
          },
        );
        socket.on("error", reject);
      });
    const first = await peer();
    assert.ok(first.verify(new X509Certificate(ca.certificatePem).publicKey));
    assert.match(first.subjectAltName ?? "", /DNS:offsite-operator-webhook\.offsite-system\.svc/);
    assert.match(first.subjectAltName ?? "", /IP Address:127\.0\.0\.1/);
    assert.deepEqual(server.problems(), []);

    const renewing = new WebhookServer({
      address: "127.0.0.1:0",
      ca,
      hosts: ["127.0.0.1"],
      lookups,
      sidecar: SETTINGS,
      logger,
      certificateValidityMs: 60_000,
      renewBeforeMs: 59_000,
      renewCheckMs: 100,
    });
    await renewing.start();
    try {
      const issued = renewing.servingCertificate;
      const deadline = Date.now() + 5000;
      while (renewing.servingCertificate === issued && Date.now() < deadline)
        await new Promise((resolve) => setTimeout(resolve, 100));
      assert.notEqual(renewing.servingCertificate, issued, "a new certificate before the old one expires");
      assert.deepEqual(renewing.problems(), []);
    } finally {
      await renewing.stop();
    }
    assert.deepEqual(renewing.problems(), ["the sidecar injection webhook is not serving"]);
  });
});
