import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { RemoteTree } from "./remoteTree.ts";

const file = (path: string, ino?: number) => ({
  type: "file" as const,
  path,
  size: 1,
  mtime: 1,
  mode: 0o644,
  sha256: "0".repeat(64),
  ...(ino !== undefined ? { ino } : {}),
});

describe("the primary's view of the standby's tree", () => {
  it("moves a directory with everything under it, and finds entries by inode where they went", () => {
    const tree = new RemoteTree([]);
    tree.set({ type: "dir", path: "a", mtime: 1, mode: 0o755, ino: 10 });
    tree.set(file("a/x", 11));
    tree.set(file("a/sub/y", 12));
    tree.set(file("ab", 13)); // a sibling whose name starts like the directory's
    tree.move("a", "b");
    assert.deepEqual([...tree.values()].map((e) => e.path).sort(), ["ab", "b", "b/sub/y", "b/x"]);
    assert.equal(tree.pathOfInode(12), "b/sub/y");
    assert.equal(tree.pathOfInode(10), "b");
  });

  it("replaces what was at the destination of a rename", () => {
    const tree = new RemoteTree([file("old", undefined), file("new", undefined)]);
    tree.set(file("old", 5));
    tree.set(file("new", 6));
    tree.move("old", "new");
    assert.equal(tree.has("old"), false);
    assert.equal(tree.pathOfInode(5), "new");
    assert.equal(tree.pathOfInode(6), undefined);
  });

  it("forgets an inode when its entry is replaced or deleted", () => {
    const tree = new RemoteTree([]);
    tree.set(file("f", 7));
    tree.set(file("f", 8));
    assert.equal(tree.pathOfInode(7), undefined);
    tree.deleteUnder("f");
    assert.equal(tree.pathOfInode(8), undefined);
    assert.equal(tree.size, 0);
  });

  it("drops a directory's contents when a file takes its place", () => {
    const tree = new RemoteTree([]);
    tree.set({ type: "dir", path: "x", mtime: 1, mode: 0o755, ino: 1 });
    tree.set(file("x/a", 2));
    tree.set(file("x", 3));
    assert.deepEqual(
      [...tree.values()].map((e) => e.path),
      ["x"],
    );
    assert.equal(tree.pathOfInode(2), undefined);
  });
});
