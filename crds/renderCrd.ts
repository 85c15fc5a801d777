/** Renders a kind's definition into a CustomResourceDefinition object. */
import { API_VERSION, CATEGORY, GROUP, VERSION, type KindDefinition } from "./definitions.ts";
import { toStructuralSchema, type JsonSchema } from "./toStructuralSchema.ts";

export function renderCrd(definition: KindDefinition): JsonSchema {
  const spec = toStructuralSchema(definition.spec);
  const status = toStructuralSchema(definition.status);
  const rootValidations = definition.maxNameLength
    ? [
        {
          rule: `self.metadata.name.size() <= ${definition.maxNameLength}`,
          message: `metadata.name must be at most ${definition.maxNameLength} characters: the operator derives object names from it`,
        },
      ]
    : undefined;
  return {
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    metadata: {
      name: `${definition.plural}.${GROUP}`,
      labels: { "app.kubernetes.io/part-of": "offsite" },
    },
    spec: {
      group: GROUP,
      scope: "Namespaced",
      names: {
        kind: definition.kind,
        listKind: `${definition.kind}List`,
        plural: definition.plural,
        singular: definition.singular,
        shortNames: definition.shortNames,
        categories: [CATEGORY],
      },
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: definition.printerColumns,
          schema: {
            openAPIV3Schema: {
              type: "object",
              description: definition.description,
              required: ["spec"],
              properties: {
                apiVersion: {
                  type: "string",
                  description: `APIVersion of this object: ${API_VERSION}.`,
                },
                kind: { type: "string", description: `Kind of this object: ${definition.kind}.` },
                metadata: { type: "object" },
                spec: { ...spec, description: `Desired state of the ${definition.kind}.` },
                status: {
                  ...status,
                  description: `Observed state of the ${definition.kind}, written by the operator.`,
                },
              },
              ...(rootValidations ? { "x-kubernetes-validations": rootValidations } : {}),
            },
          },
        },
      ],
    },
  };
}
