/**
 * The resources a controller can watch, each named once: how to list it across all
 * namespaces and where its watch lives. The runtime keeps one Reflector per resource
 * `name`, however many controllers watch it.
 *
 * The subtle point: owned resources are listed with `managed-by=offsite-operator` only,
 * never with one kind's owner label, so a second controller watching the same resource
 * shares the reflector (and its cache) instead of opening a second watch.
 */
import {
  AppsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  type KubernetesObject,
} from "@kubernetes/client-node";
import { MANAGED_SELECTOR } from "./ownership.ts";

export interface WatchedResource {
  /** Unique; for logs and the offsite_watch_restarts_total label, e.g. "statefulsets". */
  name: string;
  /** The collection's path for watches, across all namespaces. */
  path: string;
  labelSelector?: string;
  list: (kc: KubeConfig) => Promise<{ items: KubernetesObject[]; metadata?: { resourceVersion?: string } }>;
}

/** A custom resource of ours (the primary objects of a controller): every object, no selector. */
export function customResource(group: string, version: string, plural: string): WatchedResource {
  return {
    name: plural,
    path: `/apis/${group}/${version}/${plural}`,
    list: (kc) =>
      kc.makeApiClient(CustomObjectsApi).listClusterCustomObject({ group, version, plural }) as Promise<{
        items: KubernetesObject[];
      }>,
  };
}

const labelSelector = MANAGED_SELECTOR;

export const STATEFULSETS: WatchedResource = {
  name: "statefulsets",
  path: "/apis/apps/v1/statefulsets",
  labelSelector,
  list: (kc) => kc.makeApiClient(AppsV1Api).listStatefulSetForAllNamespaces({ labelSelector }),
};

export const SERVICES: WatchedResource = {
  name: "services",
  path: "/api/v1/services",
  labelSelector,
  list: (kc) => kc.makeApiClient(CoreV1Api).listServiceForAllNamespaces({ labelSelector }),
};

export const SECRETS: WatchedResource = {
  name: "secrets",
  path: "/api/v1/secrets",
  labelSelector,
  list: (kc) => kc.makeApiClient(CoreV1Api).listSecretForAllNamespaces({ labelSelector }),
};

export const PERSISTENT_VOLUME_CLAIMS: WatchedResource = {
  name: "persistentvolumeclaims",
  path: "/api/v1/persistentvolumeclaims",
  labelSelector,
  list: (kc) => kc.makeApiClient(CoreV1Api).listPersistentVolumeClaimForAllNamespaces({ labelSelector }),
};

/** The pods of what the operator runs (a receiver's `<name>-0`); status reports on them. */
export const PODS: WatchedResource = {
  name: "pods",
  path: "/api/v1/pods",
  labelSelector,
  list: (kc) => kc.makeApiClient(CoreV1Api).listPodForAllNamespaces({ labelSelector }),
};
