import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { once } from "node:events";
import type { ServerResponse } from "node:http";
import { createServer, type Server } from "node:https";
import { createServer as createTcpServer, type AddressInfo } from "node:net";
import {
  createCertificateAuthority,
  issueCertificate,
  type CertificateAndKey,
} from "../../pki/certificates.ts";
import {
  issueAgentControlCertificate,
  issueOperatorControlCertificate,
} from "../../pki/controlIdentities.ts";
import { AGENT_CONTROL_COMMON_NAME, type JobRequest } from "../../contract/reports.ts";
import {
  type ControlClientOptions,
  type ControlError,
  fetchReceiverReport,
  runJob,
} from "./controlClient.ts";

const DAY = 86_400_000;
const progress = {
  type: "progress",
  jobId: "j",
  at: "2026-12-01T10:00:00Z",
  phase: "sending",
  filesDone: 1,
  filesTotal: 2,
  bytesDone: 3,
  bytesTotal: 4,
};
const result = {
  type: "result",
  jobId: "j",
  at: "2026-12-01T10:00:01Z",
  outcome: "succeeded",
  files: { scanned: 2, changed: 2, deleted: 0, filtered: 0, stopped: 0 },
  bytes: { sent: 10, changed: 4 },
  problems: [],
};

/** The client against a real HTTPS server that answers what each test says (no agent). */
describe("the operator's control client", () => {
  let ca: CertificateAndKey;
  let options: ControlClientOptions;
  let server: Server;
  let answer: (response: ServerResponse) => void = () => undefined;
  const address = () => ({ host: "127.0.0.1", port: (server.address() as AddressInfo).port });
  const request = { jobId: "j" } as JobRequest; // the client sends what it is given

  before(async () => {
    ca = await createCertificateAuthority("offsite operator CA", DAY);
    const agent = await issueAgentControlCertificate(ca, DAY);
    const operator = await issueOperatorControlCertificate(ca, DAY);
    options = {
      operatorCredentials: { cert: operator.certificatePem, key: operator.privateKeyPem },
      caPem: ca.certificatePem,
      expectCommonName: AGENT_CONTROL_COMMON_NAME,
    };
    server = createServer(
      {
        minVersion: "TLSv1.3",
        ca: ca.certificatePem,
        cert: agent.certificatePem,
        key: agent.privateKeyPem,
        requestCert: true,
        rejectUnauthorized: true,
      },
      (_request, response) => {
        _request.resume();
        answer(response);
      },
    );
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
  });
  after(() => server.close());

  const stream = (...lines: string[]) => {
    answer = (response) => {
      response.writeHead(200, { "content-type": "application/x-ndjson" });
      response.end(lines.map((line) => `${line}\n`).join(""));
    };
  };

  it("reads progress lines and resolves with the result", async () => {
    stream(JSON.stringify(progress), JSON.stringify(result));
    const seen: unknown[] = [];
    const got = await runJob(address(), request, { ...options, onProgress: (p) => seen.push(p) });
    assert.deepEqual(got, result);
    assert.deepEqual(seen, [progress]);
  });

  it("refuses a line that is not JSON, one that breaks the contract, and a stream without a result", async () => {
    stream(JSON.stringify(progress), "{oops");
    await assert.rejects(
      runJob(address(), request, options),
      (error: ControlError) => error.kind === "protocol" && /line 2 .*not JSON/.test(error.message),
    );
    stream(JSON.stringify({ ...result, outcome: "great" }));
    await assert.rejects(
      runJob(address(), request, options),
      (error: ControlError) => error.kind === "protocol" && /does not fit the contract/.test(error.message),
    );
    stream(JSON.stringify(progress));
    await assert.rejects(
      runJob(address(), request, options),
      (error: ControlError) => error.kind === "protocol" && /ended without a result/.test(error.message),
    );
  });

  it("carries the agent's status, code and message, and refuses a report that breaks the contract", async () => {
    answer = (response) => {
      response.writeHead(503, { "content-type": "application/json" });
      response.end(JSON.stringify({ code: "unavailable", message: "not now" }));
    };
    await assert.rejects(
      runJob(address(), request, options),
      (error: ControlError) =>
        error.kind === "http" &&
        error.status === 503 &&
        error.code === "unavailable" &&
        /not now/.test(error.message),
    );
    answer = (response) => {
      response.writeHead(200, { "content-type": "application/json" });
      response.end(JSON.stringify({ reportedAt: "yesterday" }));
    };
    await assert.rejects(
      fetchReceiverReport(address(), options),
      (error: ControlError) => error.kind === "protocol",
    );
  });

  it("tells a refused connection, a silent peer and an impostor apart", async () => {
    const closed = createTcpServer().listen(0, "127.0.0.1");
    await once(closed, "listening");
    const port = (closed.address() as AddressInfo).port;
    closed.close();
    await assert.rejects(
      runJob({ host: "127.0.0.1", port }, request, options),
      (error: ControlError) => error.kind === "connect" && error.code === "ECONNREFUSED",
    );
    const silent = createTcpServer((socket) => socket.on("error", () => undefined)).listen(0, "127.0.0.1");
    await once(silent, "listening");
    await assert.rejects(
      runJob({ host: "127.0.0.1", port: (silent.address() as AddressInfo).port }, request, {
        ...options,
        connectTimeoutMs: 300,
      }),
      (error: ControlError) => error.kind === "connect" && error.code === "ETIMEDOUT",
    );
    silent.close();
    // A certificate from the operator's CA, but not an agent's: refused by its CN.
    const impostor = await issueCertificate(ca, {
      commonName: "not-an-agent",
      usage: "server",
      validForMs: DAY,
    });
    server.setSecureContext({
      ca: ca.certificatePem,
      cert: impostor.certificatePem,
      key: impostor.privateKeyPem,
    });
    stream(JSON.stringify(result));
    await assert.rejects(
      runJob(address(), request, options),
      (error: ControlError) => error.kind === "tls" && /CN=not-an-agent/.test(error.message),
    );
  });
});
