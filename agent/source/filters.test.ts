import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { executableKind, FIREWALL_HEAD_BYTES } from "./filters.ts";

const head = (text: string | Buffer) => (typeof text === "string" ? Buffer.from(text, "latin1") : text);

describe("the content firewall's look at a file's first bytes", () => {
  it("knows binaries by their magic, whatever the name", () => {
    assert.equal(executableKind(head(Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1]))), "elf");
    assert.equal(executableKind(head("MZ\x90\x00")), "pe");
    assert.equal(executableKind(head(Buffer.from([0xcf, 0xfa, 0xed, 0xfe]))), "mach-o");
  });

  it("knows scripts: a shebang, PHP anywhere in the head, ASP/JSP/PHP short tags at the start", () => {
    assert.equal(executableKind(head("#!/bin/sh\n")), "script");
    assert.equal(executableKind(head("<?PHP echo 1;")), "script");
    assert.equal(executableKind(head("GIF89a\x01\x00\x01\x00<?php eval($_POST['x']);")), "script");
    assert.equal(executableKind(head('\xef\xbb\xbf  <%@ Page Language="C#" %>')), "script");
    assert.equal(executableKind(head("<?= $secret ?>")), "script");
    assert.equal(executableKind(head('<html><script runat="server">')), "script");
  });

  it("lets text and data through", () => {
    assert.equal(executableKind(head('<?xml version="1.0"?><svg/>')), undefined);
    assert.equal(executableKind(head("<html><body>100 <% off</body></html>")), undefined);
    assert.equal(executableKind(head("plain text")), undefined);
    assert.equal(executableKind(head("")), undefined);
  });

  it("does not stop random binary data (photos) by chance", () => {
    let stopped = 0;
    for (let i = 0; i < 20_000; i++) {
      const bytes = randomBytes(FIREWALL_HEAD_BYTES);
      bytes[0] = 0xff; // a JPEG's first byte: never a magic number
      if (executableKind(bytes)) stopped++;
    }
    assert.equal(stopped, 0);
  });
});
