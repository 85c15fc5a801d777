/**
 * How the operator marks what it owns, shared by every kind: the managed-by label, the
 * owner label that maps an owned object back to its owner's key, owner references and
 * the one finalizer name.
 *
 * The subtle point: owned objects are found by *label*, not by owner reference, because
 * a label can be selected on by a watch and survives objects that must not carry an
 * owner reference (a data claim garbage collection must never delete). Every reflector
 * of an owned resource selects only `managed-by=offsite-operator`, so one reflector per
 * resource serves every controller; each controller's mapper picks out its own label.
 */
import type { KubernetesObject, V1OwnerReference } from "@kubernetes/client-node";

export const MANAGED_BY = "offsite-operator";
export const MANAGED_BY_LABEL = "app.kubernetes.io/managed-by";
/** Selects everything the operator labels as its own. */
export const MANAGED_SELECTOR = `${MANAGED_BY_LABEL}=${MANAGED_BY}`;
/** The finalizer the runtime keeps on every object whose controller has a finalize step. */
export const FINALIZER = "offsite.dev/finalizer";

/** The label naming an object's owner of `kind`, e.g. offsite.dev/offsiteserver. */
export function ownerLabel(kind: string): string {
  return `offsite.dev/${kind.toLowerCase()}`;
}

/** Maps an owned object to the key (namespace/name) of its owner of `kind`, by label. */
export function ownerKeyByLabel(kind: string): (object: KubernetesObject) => string | undefined {
  const label = ownerLabel(kind);
  return (object) => {
    const owner = object.metadata?.labels?.[label];
    return owner && object.metadata?.namespace ? `${object.metadata.namespace}/${owner}` : undefined;
  };
}

export interface Owner {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
}

/** The controller owner reference: garbage collection deletes the object with its owner. */
export function ownerReference(owner: Owner): V1OwnerReference {
  return {
    apiVersion: owner.apiVersion,
    kind: owner.kind,
    name: owner.name,
    uid: owner.uid,
    controller: true,
    blockOwnerDeletion: true,
  };
}
