/**
 * The operator's one logger: pino, JSON lines. Every line about an object carries its
 * kind, namespace and name (use `forObject`), so `jq 'select(.name=="vault")'` finds all.
 */
import { pino, type Logger } from "pino";

export type { Logger };

export function createLogger(level: string, identity: string): Logger {
  return pino({
    level,
    base: { component: "offsite-operator", identity },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  });
}

export function forObject(logger: Logger, kind: string, namespace: string, name: string): Logger {
  return logger.child({ kind, namespace, name });
}
