import { afterEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { binaryPath, builtBinaryDir, pinnedVersions } from "./binaries.ts";

const saved = { ...process.env };
afterEach(() => {
  for (const key of [
    "KUBEBUILDER_ASSETS",
    "TEST_ASSET_KUBE_APISERVER",
    "TEST_ASSET_KWOK",
    "OFFSITE_CACHE_DIR",
  ]) {
    if (saved[key] === undefined) delete process.env[key];
    else process.env[key] = saved[key];
  }
});

function fakeBinary(dir: string, name: string): string {
  const path = join(dir, name);
  writeFileSync(path, "#!/bin/sh\n");
  chmodSync(path, 0o755);
  return path;
}

describe("control-plane binary resolution", () => {
  it("reads the pinned versions from versions.env and keys the cache directory by them", () => {
    const versions = pinnedVersions();
    assert.match(versions.KUBERNETES_VERSION!, /^v1\.3[34]\.\d+$/);
    assert.match(versions.ETCD_VERSION!, /^v3\.[56]\.\d+$/);
    process.env.OFFSITE_CACHE_DIR = "/cache";
    assert.equal(
      builtBinaryDir(),
      `/cache/bin/all-k8s${versions.KUBERNETES_VERSION}-etcd${versions.ETCD_VERSION}-kwok${versions.KWOK_VERSION}-helm${versions.HELM_VERSION}` +
        `-crictl${versions.CRICTL_VERSION}-coredns${versions.COREDNS_VERSION}`,
    );
  });

  it("prefers envtest's TEST_ASSET_* variable, then KUBEBUILDER_ASSETS", () => {
    const dir = mkdtempSync(join(tmpdir(), "offsite-assets-"));
    try {
      const own = fakeBinary(dir, "my-apiserver");
      fakeBinary(dir, "kube-apiserver");
      const kwok = fakeBinary(dir, "kwok");
      process.env.KUBEBUILDER_ASSETS = dir;
      process.env.TEST_ASSET_KUBE_APISERVER = own;
      assert.equal(binaryPath("kube-apiserver"), own);
      delete process.env.TEST_ASSET_KUBE_APISERVER;
      assert.equal(binaryPath("kube-apiserver"), join(dir, "kube-apiserver"));
      assert.equal(binaryPath("kwok"), kwok);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("refuses a TEST_ASSET_* path that does not exist, naming the variable", () => {
    process.env.TEST_ASSET_KWOK = "/nonexistent/kwok";
    assert.throws(() => binaryPath("kwok"), /TEST_ASSET_KWOK=\/nonexistent\/kwok does not exist/);
  });
});
