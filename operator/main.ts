/**
 * The operator's entrypoint (also the container's): parse configuration, connect, run
 * until SIGTERM/SIGINT, then shut down gracefully.
 */
import { KubeConfig } from "@kubernetes/client-node";
import { loadConfig, USAGE } from "./runtime/config.ts";
import { createLogger } from "./runtime/logger.ts";
import { OperatorManager } from "./manager.ts";

if (process.argv.includes("--help") || process.argv.includes("-h")) {
  console.log(USAGE);
  process.exit(0);
}

let config;
try {
  config = loadConfig(process.argv.slice(2), process.env);
} catch (error) {
  console.error((error as Error).message);
  process.exit(2);
}

const logger = createLogger(config.logLevel, config.identity);
const kc = new KubeConfig();
if (config.kubeconfig) kc.loadFromFile(config.kubeconfig);
else kc.loadFromDefault();

const manager = new OperatorManager(config, kc, logger);
let stopping = false;
for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.on(signal, () => {
    if (stopping) process.exit(1); // a second signal: stop waiting
    stopping = true;
    logger.info({ signal }, "received signal");
    manager.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, "shutdown failed");
        process.exit(1);
      },
    );
  });
}
process.on("unhandledRejection", (error) => {
  logger.fatal({ err: error }, "unhandled rejection; exiting so the process is restarted cleanly");
  process.exit(1);
});

try {
  await manager.start();
  logger.info({ leaderElection: config.leaderElection }, "operator started");
} catch (error) {
  logger.fatal({ err: error }, "the operator could not start");
  process.exit(1);
}
