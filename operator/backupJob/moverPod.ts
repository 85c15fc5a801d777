/**
 * The mover pod: a short-lived pod running the agent for one run, where no sidecar can —
 * a BackupJob of a claim (spec.source.persistentVolumeClaim, mounted read-only), and
 * every restore (the claim behind the data, mounted writable, since a backup sidecar's
 * mounts are read-only and its agent refuses restores: the agent that protects the data
 * never writes it). The operator sends it the job like a sidecar, through its control
 * port, and deletes it once the run's result is in status.
 *
 * It runs on the node where the claim is in use (a ReadWriteOnce volume is attached to
 * one node), with no service account token and the least privilege that reads (or, to
 * restore, writes) files of any owner.
 */
import type { V1Pod } from "@kubernetes/client-node";
import { agentFlags } from "../../contract/roles.ts";
import { renderFlags } from "../../contract/flags.ts";
import {
  AGENT_CONTROL_CERTS_DIR,
  AGENT_CONTROL_PORT,
  AGENT_CONTROL_SECRET,
  AGENT_HEALTH_PORT,
} from "../agentControl/names.ts";
import { backupJobLabels, backupJobNames, jobOwnerReference } from "./names.ts";

/** Where a mover mounts a spec.source.persistentVolumeClaim: source.path is read inside it. */
export const CLAIM_MOUNT_PATH = "/data";
export const MOVER_CONTAINER = "agent";
export const RUN_ANNOTATION = "offsite.dev/run";

export interface MoverPodInputs {
  job: { name: string; namespace: string; uid: string };
  runId: string;
  image: string;
  claimName: string;
  mountPath: string;
  subPath?: string;
  writable: boolean;
  nodeName?: string;
}

export function moverArguments(writable: boolean): string[] {
  return [
    "agent",
    ...renderFlags(agentFlags, {
      controlCerts: AGENT_CONTROL_CERTS_DIR,
      controlPort: AGENT_CONTROL_PORT,
      healthPort: AGENT_HEALTH_PORT,
      allowRestore: writable,
    }),
  ];
}

export function desiredMoverPod(inputs: MoverPodInputs): V1Pod {
  const { job, writable } = inputs;
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name: backupJobNames(job.name).moverPod,
      namespace: job.namespace,
      labels: { ...backupJobLabels(job.name), "app.kubernetes.io/component": "mover" },
      annotations: { [RUN_ANNOTATION]: inputs.runId },
      ownerReferences: [jobOwnerReference(job)],
    },
    spec: {
      ...(inputs.nodeName ? { nodeName: inputs.nodeName } : {}),
      restartPolicy: "OnFailure",
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      terminationGracePeriodSeconds: 10,
      containers: [
        {
          name: MOVER_CONTAINER,
          image: inputs.image,
          args: moverArguments(writable),
          ports: [
            { name: "control", containerPort: AGENT_CONTROL_PORT },
            { name: "health", containerPort: AGENT_HEALTH_PORT },
          ],
          readinessProbe: { httpGet: { path: "/readyz", port: "health" }, periodSeconds: 2 },
          livenessProbe: {
            httpGet: { path: "/healthz", port: "health" },
            periodSeconds: 10,
            failureThreshold: 3,
          },
          resources: { requests: { cpu: "50m", memory: "64Mi" }, limits: { memory: "512Mi" } },
          securityContext: {
            runAsUser: 0,
            runAsNonRoot: false,
            allowPrivilegeEscalation: false,
            readOnlyRootFilesystem: true,
            seccompProfile: { type: "RuntimeDefault" },
            capabilities: {
              drop: ["ALL"],
              // Read any file; to restore, also write and give files back their owners and modes.
              add: writable ? ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID"] : ["DAC_READ_SEARCH"],
            },
          },
          volumeMounts: [
            {
              name: "data",
              mountPath: inputs.mountPath,
              readOnly: !writable,
              ...(inputs.subPath ? { subPath: inputs.subPath } : {}),
            },
            { name: "control", mountPath: AGENT_CONTROL_CERTS_DIR, readOnly: true },
          ],
        },
      ],
      volumes: [
        { name: "data", persistentVolumeClaim: { claimName: inputs.claimName, readOnly: !writable } },
        { name: "control", secret: { secretName: AGENT_CONTROL_SECRET, optional: true } },
      ],
    },
  };
}
