import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { UsageError, flagHelp, parseFlags, renderFlags, type FlagTable } from "./flags.ts";
import { ROLE_FLAGS, compareFlags, receiveFlags, pushFlags, filterOptionsOf } from "./roles.ts";
import { DEFAULT_RETENTION } from "./retention.ts";

describe("flag tables", () => {
  it("parse a receiver's command line into typed options with defaults", () => {
    const { options } = parseFlags(receiveFlags, ["--root=/data", "--certs", "/etc/tls"], "receive");
    const root: string = options.root; // required: never undefined (checked by tsc)
    assert.equal(root, "/data");
    assert.equal(options.port, 5722);
    assert.equal(options.keepMonthly, DEFAULT_RETENTION.keepMonthly);
    assert.deepEqual(options.suspendedSources, []);
  });

  it("name every missing required flag", () => {
    assert.throws(() => parseFlags(receiveFlags, [], "receive"), {
      name: "UsageError",
      message: "receive needs --root DIR and --certs DIR",
    });
    // --help needs nothing else
    assert.equal(parseFlags(receiveFlags, ["--help"], "receive", ["help"]).extra.help, true);
  });

  it("refuse unknown flags, bad numbers, bad GUIDs and bad sizes with the flag's name", () => {
    assert.throws(() => parseFlags(receiveFlags, ["--root=/d", "--certs=/c", "--tls-cert=x"], "receive"), {
      code: "ERR_PARSE_ARGS_UNKNOWN_OPTION",
    });
    assert.throws(() => parseFlags(receiveFlags, ["--root=/d", "--certs=/c", "--port=70000"], "r"), /--port/);
    assert.throws(
      () => parseFlags(receiveFlags, ["--root=/d", "--certs=/c", "--keep-last=0"], "r"),
      /--keep-last/,
    );
    assert.throws(
      () => parseFlags(receiveFlags, ["--root=/d", "--certs=/c", "--suspended-source=Orders_DB"], "r"),
      (error: Error) =>
        error instanceof UsageError && /--suspended-source "Orders_DB" is not a GUID/.test(error.message),
    );
    assert.throws(
      () => parseFlags(pushFlags, ["--to=x:1", "--max-file-size=ten"], "push"),
      /--max-file-size/,
    );
    for (const bad of ["0s", "1500us", "soon"])
      assert.throws(
        () => parseFlags(receiveFlags, ["--root=/d", "--certs=/c", `--idle-timeout=${bad}`], "r"),
        (error: Error) => error instanceof UsageError && /--idle-timeout/.test(error.message),
        bad,
      );
    assert.throws(
      () => parseFlags(compareFlags, ["--to=./b", "--version=latest"], "compare"),
      /--version "latest" is not a version ID/,
    );
  });

  it("read switches that default to on, and their --no- form", () => {
    const on = parseFlags(pushFlags, ["--to=./b", "--firewall"], "push").options;
    assert.equal(filterOptionsOf(on).firewall.blockScripts, true);
    const off = parseFlags(pushFlags, ["--to=./b", "--firewall", "--no-firewall-scripts"], "push").options;
    assert.equal(filterOptionsOf(off).firewall.blockScripts, false);
  });

  it("render what parses back to the same options, for every role (property)", () => {
    for (const [role, table] of Object.entries(ROLE_FLAGS) as [string, FlagTable][]) {
      // A base that satisfies the required flags, then random values for the rest.
      const required = Object.fromEntries(
        Object.entries(table)
          .filter(([, flag]) => flag.required)
          .map(([key]) => [key, "/x"]),
      );
      // Rendered, so a required flag of two words (agent's --control-certs) gets its flag name.
      const base = parseFlags(table, renderFlags(table, required as never), role).options;
      fc.assert(
        fc.property(
          fc.record({
            count: fc.integer({ min: 1, max: 1024 }),
            texts: fc.array(
              fc.string({ minLength: 1, maxLength: 20 }).filter((s) => !s.startsWith("-")),
              {
                maxLength: 3,
              },
            ),
            guid: fc.constantFrom("orders-db", "0b5e3c1a-7d2f-4c9e-8a61-3f0d2b7e9c44", "a"),
            on: fc.boolean(),
          }),
          ({ count, texts, guid, on }) => {
            const options: Record<string, unknown> = { ...base };
            for (const [key, flag] of Object.entries(table)) {
              if (flag.kind === "switch") options[key] = on;
              else if (flag.kind === "list")
                options[key] = key.toLowerCase().includes("source") ? [guid] : texts;
              else if (key === "site" || key === "source") options[key] = guid;
              else if (key.startsWith("keep") || key === "maxConcurrentJobs" || key === "port")
                options[key] = count;
              else if (key === "maxFileSize") options[key] = count * 1024;
              else if (key === "idleTimeout")
                options[key] = count * 997; // needs "ms", "s" or "m"
              else if (key === "version") options[key] = `20261201T0${count % 10}1500Z`;
            }
            const argv = renderFlags(table, options as never);
            assert.deepEqual(parseFlags(table, argv, role).options, options, argv.join(" "));
          },
        ),
        { numRuns: 50 },
      );
    }
  });
});

describe("flag help", () => {
  it("puts the help of a name wider than the column on a line of its own, never glued to the name", () => {
    const lines = flagHelp(pushFlags).split("\n");
    const at = lines.findIndex((line) => line.includes("--firewall-executables"));
    assert.match(lines[at]!, /to turn off\)$/);
    assert.match(lines[at + 1]!, /^ {20,}The firewall stops ELF/);
    for (const line of lines) assert.doesNotMatch(line, /\)[A-Z]/, line);
  });
});
