/**
 * The controllers this operator runs, in one list: registering a kind is one line here
 * and a ControllerDefinition beside its reconciler (runtime/controller.ts says how).
 * The manager runs them; the metrics of every kind listed exist from start-up.
 */
import type { ControllerDefinition } from "./runtime/controller.ts";
import { callAgentOverControlChannel } from "./backupJob/callAgent.ts";
import { createBackupJobController } from "./backupJob/reconcileBackupJob.ts";
import { createOffsiteServerController } from "./offsiteServer/reconcileOffsiteServer.ts";
import { createReplicationPairController } from "./replicationPair/reconcileReplicationPair.ts";

export const CONTROLLERS: readonly ControllerDefinition[] = [
  createOffsiteServerController(),
  createBackupJobController(callAgentOverControlChannel),
  createReplicationPairController(),
];
