/**
 * The check every container the operator renders goes through in a unit test: its args
 * parsed by the agent's own command-line parser (agent/cli/commandLine.ts), so an
 * argument the agent would refuse (`Unknown option '--tls-cert'`, exit 2 in the pod)
 * fails the test instead. Use it for each new container: receiver, sidecar, mover.
 */
import type { V1Container } from "@kubernetes/client-node";
import { parseCommandLine, type CommandLine } from "../../agent/cli/commandLine.ts";

export function agentCommandLineOf(container: V1Container): CommandLine {
  if (container.command !== undefined)
    throw new Error(
      `container ${container.name} overrides the image's entrypoint; the agent is started by its args`,
    );
  const args = container.args ?? [];
  try {
    return parseCommandLine(args);
  } catch (error) {
    throw new Error(
      `the agent refuses container ${container.name}'s args [${args.join(" ")}]: ${(error as Error).message}`,
      {
        cause: error,
      },
    );
  }
}
