/**
 * `offsite`: the agent's one program (and the container's entrypoint). Roles: receive,
 * push, compare, restore, certs — see `offsite --help`.
 *
 * Start-up time matters (a push is often a short job): Node caches the compiled, type-
 * stripped modules on disk, which must be switched on before they are imported.
 */
import { enableCompileCache } from "node:module";

enableCompileCache();
await import("./cli/runCli.ts");
