/**
 * The operator's API, group `trafficmirror.twtech.io`, version `v1alpha1`: zod schemas that give
 * the TypeScript types and, through `crd-gen.ts`, the CRDs' OpenAPI schemas with CEL rules. One
 * source of truth: change a field here and `make manifests`.
 */
import { z } from "zod";

/** API group. */
export const GROUP = "trafficmirror.twtech.io";
/** API version. */
export const VERSION = "v1alpha1";
/** apiVersion of both kinds. */
export const API_VERSION = `${GROUP}/${VERSION}`;
/** Finalizer the operator puts on policies and targets. */
export const FINALIZER = `${GROUP}/cleanup`;

type Rule = { rule: string; message: string; fieldPath?: string; reason?: string };
/** Attaches CEL validation rules to a schema. */
function cel<T extends z.ZodType>(schema: T, rules: Rule[]): T {
  return schema.meta({ "x-kubernetes-validations": rules });
}

const dnsLabel = z
  .string()
  .min(1)
  .max(63)
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
const name253 = z
  .string()
  .min(1)
  .max(253)
  .regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/);

const cidr = cel(z.string().max(43), [
  { rule: "isCIDR(self)", message: "must be a CIDR block such as 10.0.0.0/16" },
]);

/** A Kubernetes label selector (matchLabels and matchExpressions). */
export const LabelSelectorSchema = z
  .object({
    matchLabels: z.record(z.string(), z.string()).optional(),
    matchExpressions: z
      .array(
        cel(
          z.object({
            key: z.string().min(1).max(317),
            operator: z.enum(["In", "NotIn", "Exists", "DoesNotExist"]),
            values: z.array(z.string().max(63)).max(64).optional(),
          }),
          [
            {
              rule: "self.operator in ['In', 'NotIn'] ? (has(self.values) && size(self.values) > 0) : !has(self.values) || size(self.values) == 0",
              message: "In and NotIn need values; Exists and DoesNotExist take none",
            },
          ],
        ),
      )
      .max(16)
      .optional(),
  })
  .describe("A label selector; an empty selector selects everything");

/** An inclusive port range. */
export const PortRangeSchema = cel(
  z.object({ from: z.number().int().min(0).max(65535), to: z.number().int().min(0).max(65535) }),
  [{ rule: "self.from <= self.to", message: "from must not be greater than to" }],
);

/** One filter rule of a policy. */
export const FilterRuleSchema = cel(
  z.object({
    direction: z
      .enum(["ingress", "egress", "both"])
      .default("both")
      .describe("Traffic into the source (ingress), out of it (egress), or both"),
    action: z
      .enum(["accept", "reject"])
      .default("accept")
      .describe("Mirror (accept) or skip (reject) matching traffic"),
    protocol: z.enum(["All", "TCP", "UDP", "ICMP", "ICMPv6"]).default("All"),
    /** The remote side's addresses: the source of ingress packets, the destination of egress ones. */
    remoteCidr: cidr.optional().describe("Remote addresses; default all"),
    remotePorts: PortRangeSchema.optional().describe("Remote ports (TCP and UDP only)"),
    localPorts: PortRangeSchema.optional().describe("Ports on the mirrored pod or node (TCP and UDP only)"),
  }),
  [
    {
      rule: "(!has(self.remotePorts) && !has(self.localPorts)) || self.protocol in ['TCP', 'UDP']",
      message: "ports can only be given for TCP or UDP",
    },
  ],
);

/** What to mirror of the selected sources' traffic. */
export const FilterSchema = z.object({
  rules: z
    .array(FilterRuleSchema)
    .max(10)
    .optional()
    .describe("Rules, first match wins; none means all traffic"),
  mirrorDns: z.boolean().default(false).describe("Also mirror traffic to the Amazon DNS server"),
});

/** A reference to a TrafficMirrorTarget. */
export const TargetRefSchema = z.object({ name: name253 });

/** TrafficMirrorPolicy spec. */
export const PolicySpecSchema = cel(
  z.object({
    podSelector: LabelSelectorSchema.optional().describe("Pods in this namespace to mirror"),
    nodeSelector: LabelSelectorSchema.optional().describe(
      "Whole nodes to mirror (only where the target allows it)",
    ),
    targetRef: TargetRefSchema.describe("The TrafficMirrorTarget copies go to"),
    filter: FilterSchema.optional(),
    priority: z
      .number()
      .int()
      .min(0)
      .max(1000)
      .default(100)
      .describe("Higher is served first when an ENI's three session slots are contested"),
    packetLength: z
      .number()
      .int()
      .min(1)
      .max(8500)
      .optional()
      .describe("Bytes of each packet to keep; default whole"),
    suspend: z.boolean().default(false).describe("Stop mirroring and remove this policy's sessions"),
    duration: cel(
      z
        .string()
        .max(32)
        .regex(/^([0-9]+h)?([0-9]+m)?([0-9]+s)?$/)
        .describe(
          "Mirror for this long after the policy was created (metadata.creationTimestamp), e.g. 10m or 1h30m; then the sessions are removed and Ready is False with reason Expired",
        ),
      [
        {
          // Only on what the pattern admits, so a wrong format gives one message, not two.
          rule: "!self.matches('^([0-9]+h)?([0-9]+m)?([0-9]+s)?$') || (self != '' && duration(self) >= duration('1s') && duration(self) <= duration('8760h'))",
          message: "must be a duration from 1s to 8760h in hours, minutes and seconds, such as 10m or 1h30m",
        },
      ],
    ).optional(),
    expiresAt: z
      .string()
      .max(64)
      .meta({ format: "date-time" })
      .optional()
      .describe(
        "Mirror until this time (RFC 3339, e.g. 2026-12-01T18:00:00Z); with duration too, the earlier one ends mirroring",
      ),
  }),
  [
    {
      rule: "has(self.podSelector) != has(self.nodeSelector)",
      message: "exactly one of podSelector or nodeSelector must be set",
    },
  ],
);

/** Which namespaces may use a target (in the manner of Gateway API's allowedRoutes). */
export const AllowedNamespacesSchema = cel(
  z.object({
    from: z.enum(["All", "Selector", "List"]).default("List"),
    selector: LabelSelectorSchema.optional(),
    names: z.array(dnsLabel).max(256).optional(),
  }),
  [
    { rule: "self.from != 'Selector' || has(self.selector)", message: "from: Selector needs a selector" },
    { rule: "self.from != 'List' || has(self.names)", message: "from: List needs names" },
  ],
);

/** The in-cluster decap collector as a destination. */
export const CollectorDestinationSchema = z.object({
  nodeSelector: z
    .record(z.string(), z.string())
    .describe("Nodes that run the collector; one AWS target per node's primary ENI"),
  selectionMode: z
    .enum(["Pod", "Eni", "Auto"])
    .default("Pod")
    .describe(
      "Where pods are selected. Pod: AWS's filter accepts only the selected pods' addresses (least bandwidth; each new pod on a shared ENI costs filter-rule calls). Eni: AWS's filter carries only the policy's rules, the session copies the ENI's matching traffic and the collector keeps only the selected pods' packets (a new pod is covered as soon as the collector knows its address; more mirrored bandwidth). Auto: Eni while an ENI's pods change, tightened to Pod once they have been quiet, where the rules fit",
    ),
});

/** TrafficMirrorTarget spec. */
export const TargetSpecSchema = cel(
  z.object({
    collector: CollectorDestinationSchema.optional(),
    networkLoadBalancerArn: z
      .string()
      .regex(
        /^arn:aws[a-z-]*:elasticloadbalancing:[a-z0-9-]+:\d{12}:loadbalancer\/net\/[A-Za-z0-9-]+\/[0-9a-f]+$/,
      )
      .optional()
      .describe("A Network Load Balancer with a UDP 4789 listener"),
    gatewayLoadBalancerEndpointId: z
      .string()
      .regex(/^vpce-[0-9a-f]{8,17}$/)
      .optional(),
    networkInterfaceId: z
      .string()
      .regex(/^eni-[0-9a-f]{8,17}$/)
      .optional(),
    trafficMirrorTargetId: z
      .string()
      .regex(/^tmt-[0-9a-f]{8,17}$/)
      .optional()
      .describe("An existing target, e.g. shared from another account"),
    allowedNamespaces: AllowedNamespacesSchema.optional().describe(
      "Who may use this target; default: nobody",
    ),
    allowNodeSources: z.boolean().default(false).describe("Allow policies that mirror whole nodes"),
    description: z.string().max(255).optional(),
  }),
  [
    {
      rule: "[has(self.collector), has(self.networkLoadBalancerArn), has(self.gatewayLoadBalancerEndpointId), has(self.networkInterfaceId), has(self.trafficMirrorTargetId)].filter(x, x).size() == 1",
      message:
        "exactly one destination must be set: collector, networkLoadBalancerArn, gatewayLoadBalancerEndpointId, networkInterfaceId or trafficMirrorTargetId",
    },
  ],
);

/** A status condition. */
export const ConditionSchema = z.object({
  type: z.string(),
  status: z.enum(["True", "False", "Unknown"]),
  reason: z.string(),
  message: z.string(),
  observedGeneration: z.number().int().optional(),
  lastTransitionTime: z.string(),
});

/** One mirror session in status. */
export const SessionStatusSchema = z.object({
  networkInterfaceId: z.string(),
  nodeName: z.string().optional(),
  sessionId: z.string().optional(),
  sessionNumber: z.number().int(),
  virtualNetworkId: z.number().int(),
  sources: z.number().int().describe("Pods (or 1 for a node) mirrored by this session"),
});

/** A source that is not mirrored, and why. */
export const UnmirroredSchema = z.object({
  kind: z.enum(["Pod", "Node"]),
  name: z.string(),
  reason: z.string(),
  message: z.string(),
});

/** TrafficMirrorPolicy status. */
export const PolicyStatusSchema = z.object({
  observedGeneration: z.number().int().optional(),
  conditions: z.array(ConditionSchema).optional(),
  selectedPods: z.number().int().optional(),
  selectedNodes: z.number().int().optional(),
  mirroredSources: z.number().int().optional(),
  mirroredEnis: z.number().int().optional(),
  sessionCount: z.number().int().optional(),
  sessions: z.array(SessionStatusSchema).max(50).optional().describe("Up to 50 sessions"),
  unmirrored: z.array(UnmirroredSchema).max(50).optional().describe("Up to 50 sources that are not mirrored"),
  expiresAt: z
    .string()
    .optional()
    .describe("When mirroring ends (from spec.duration or spec.expiresAt); absent when it does not"),
});

/** TrafficMirrorTarget status. */
export const TargetStatusSchema = z.object({
  observedGeneration: z.number().int().optional(),
  conditions: z.array(ConditionSchema).optional(),
  awsTargets: z
    .array(
      z.object({
        trafficMirrorTargetId: z.string().optional(),
        networkInterfaceId: z.string().optional(),
        sources: z.number().int(),
      }),
    )
    .max(100)
    .optional(),
  policies: z.number().int().optional(),
});

/** TrafficMirrorPolicy spec. */
export type PolicySpec = z.infer<typeof PolicySpecSchema>;
/** TrafficMirrorTarget spec. */
export type TargetSpec = z.infer<typeof TargetSpecSchema>;
/** A label selector. */
export type LabelSelector = z.infer<typeof LabelSelectorSchema>;
/** One policy filter rule. */
export type PolicyFilterRule = z.infer<typeof FilterRuleSchema>;
/** TrafficMirrorPolicy status. */
export type PolicyStatus = z.infer<typeof PolicyStatusSchema>;
/** TrafficMirrorTarget status. */
export type TargetStatus = z.infer<typeof TargetStatusSchema>;

/** How a CRD is named and shown. */
export interface KindInfo {
  kind: string;
  plural: string;
  singular: string;
  shortNames: string[];
  scope: "Namespaced" | "Cluster";
  spec: z.ZodType;
  status: z.ZodType;
  printerColumns: { name: string; type: string; jsonPath: string; description?: string }[];
}

/** The two kinds. */
export const KINDS: readonly KindInfo[] = [
  {
    kind: "TrafficMirrorPolicy",
    plural: "trafficmirrorpolicies",
    singular: "trafficmirrorpolicy",
    shortNames: ["tmp", "mirrorpolicy"],
    scope: "Namespaced",
    spec: PolicySpecSchema,
    status: PolicyStatusSchema,
    printerColumns: [
      { name: "Target", type: "string", jsonPath: ".spec.targetRef.name" },
      { name: "Ready", type: "string", jsonPath: ".status.conditions[?(@.type=='Ready')].status" },
      { name: "Reason", type: "string", jsonPath: ".status.conditions[?(@.type=='Ready')].reason" },
      { name: "Sources", type: "integer", jsonPath: ".status.mirroredSources" },
      { name: "Sessions", type: "integer", jsonPath: ".status.sessionCount" },
      { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
    ],
  },
  {
    kind: "TrafficMirrorTarget",
    plural: "trafficmirrortargets",
    singular: "trafficmirrortarget",
    shortNames: ["tmt", "mirrortarget"],
    scope: "Cluster",
    spec: TargetSpecSchema,
    status: TargetStatusSchema,
    printerColumns: [
      { name: "Ready", type: "string", jsonPath: ".status.conditions[?(@.type=='Ready')].status" },
      { name: "Reason", type: "string", jsonPath: ".status.conditions[?(@.type=='Ready')].reason" },
      { name: "Policies", type: "integer", jsonPath: ".status.policies" },
      { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
    ],
  },
];
