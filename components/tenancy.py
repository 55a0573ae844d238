"""Team tenancy: one isolated tenant per entry of the stack's `teams`, plus the platform's PriorityClasses.

A `Team` is a namespace (team label, Pod Security admission), a ResourceQuota and LimitRange, three service
accounts (`notebook`, `training`, `serving`) with IRSA roles scoped to the team's own S3 prefixes and
datasets, RBAC for the team's group, a read-only claim per dataset, and NetworkPolicies:

- default deny of ingress and egress for every pod, then DNS to kube-system for all;
- `job-type: training`: egress to MLflow, S3 (the region's managed prefix list, 443) and the team's FSx file
  systems (Lustre ports) only, plus the team's other training pods (distributed training talks pod to pod);
- `job-type: notebook`: the same, plus the JupyterHub API and the team's package index (CIDRs or a proxy);
  ingress from the hub and proxy only;
- `job-type: inference`: ingress from the serving gateway only (and Prometheus, when given, on the queue-proxy's
  metrics port only); egress to S3 to load the model.

There is no rule to the Kubernetes API: none of these pods needs it (the training operator runs elsewhere).
`Tenancy` declares the PriorityClasses and looks up the S3 prefix list once for all teams.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components import labels, mlflow_auth
from components.config import TeamConfig
from components.endpoints import (
    ClusterAccess,
    DatasetAccess,
    DvcRemote,
    MetricsScraper,
    PodSource,
    PriorityClasses,
    ServiceEndpoint,
    TeamAccess,
)
from components.iam import irsa_role
from components.team_network import network_policy_specs

# Pod Security admission: enforce `baseline` (no privileged pods, host namespaces or host paths); warn and
# audit against `restricted` so teams see what would break if it were tightened.
POD_SECURITY_LABELS = {
    "pod-security.kubernetes.io/enforce": "baseline",
    "pod-security.kubernetes.io/warn": "restricted",
    "pod-security.kubernetes.io/audit": "restricted",
}
# Applied to containers that set no requests/limits of their own (the quota makes requests mandatory).
LIMIT_DEFAULTS = {"defaultRequest": {"cpu": "250m", "memory": "512Mi"}, "default": {"memory": "2Gi"}}
SERVICE_ACCOUNTS = ("notebook", "training", "serving")
ALL_VERBS = ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"]
READ_VERBS = ["get", "list", "watch"]
# What a team member may do in the team namespace. Deliberately not the built-in `edit` role: members must not
# change NetworkPolicies, quotas, RBAC or service accounts, which are the tenant's isolation. No pods/exec, attach,
# portforward or ephemeralcontainers: RBAC cannot say "only your own pod", and with them any member could enter a
# colleague's notebook server (their session, tokens and files). Members use their own notebook's terminal
# (JupyterHub authenticates them), `kubectl logs`, and a debug pod of their own (docs/security.md).
SHELL_SUBRESOURCES = ("pods/exec", "pods/attach", "pods/portforward", "pods/ephemeralcontainers")
TEAM_MEMBER_RULES = [
    {"apiGroups": [""], "resources": ["pods", "services", "configmaps", "secrets", "persistentvolumeclaims"],
     "verbs": ALL_VERBS},
    {"apiGroups": [""], "resources": ["pods/log", "events", "serviceaccounts", "resourcequotas", "limitranges"],
     "verbs": READ_VERBS},
    {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets", "replicasets"], "verbs": ALL_VERBS},
    {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": ALL_VERBS},
    {"apiGroups": ["kubeflow.org"], "resources": ["pytorchjobs", "tfjobs", "mpijobs", "xgboostjobs"],
     "verbs": ALL_VERBS},
    {"apiGroups": ["trainer.kubeflow.org"], "resources": ["trainjobs"], "verbs": ALL_VERBS},
    {"apiGroups": ["serving.kserve.io"], "resources": ["inferenceservices"], "verbs": ALL_VERBS},
    {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": READ_VERBS},
]
# name -> (value, preemption policy, description). Inference outranks training; notebooks (a person waiting)
# queue ahead of training but never evict anything; preemptible batch sits below every unclassified pod.
PRIORITY_CLASS_SPECS = {
    "inference": (1_000_000, "PreemptLowerPriority", "Online model serving: scheduled first, may preempt."),
    "notebook": (100_000, "Never", "Interactive notebooks: ahead of training in the queue, never preempt."),
    "training": (10_000, "PreemptLowerPriority", "Training jobs: may preempt preemptible batch work."),
    "batch": (-1_000, "Never", "Preemptible batch work: runs on spare capacity, first to be preempted."),
}


def s3_bucket_and_prefix(uri: str) -> tuple[str, str]:
    """`s3://bucket/a/b/` -> ("bucket", "a/b"); the whole bucket gives an empty prefix."""
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    return bucket, prefix.strip("/")


def s3_read_statements(uri: str, sid: str) -> list[dict[str, Any]]:
    """Read one S3 prefix (object and listing) and nothing else of the bucket."""
    bucket, prefix = s3_bucket_and_prefix(uri)
    objects = [f"arn:aws:s3:::{bucket}/{prefix}", f"arn:aws:s3:::{bucket}/{prefix}/*"] if prefix \
        else [f"arn:aws:s3:::{bucket}/*"]
    listing: dict[str, Any] = {"Sid": f"{sid}List", "Effect": "Allow", "Action": "s3:ListBucket",
                               "Resource": f"arn:aws:s3:::{bucket}"}
    if prefix:
        listing["Condition"] = {"StringLike": {"s3:prefix": [prefix, f"{prefix}/*"]}}
    return [{"Sid": f"{sid}Read", "Effect": "Allow", "Action": "s3:GetObject", "Resource": objects}, listing]


def dvc_statements(team: str, bucket_arn: str, kms_key_arn: str) -> list[dict[str, Any]]:
    """Read and write the team's own DVC prefix `s3://<bucket>/<team>/`, with the bucket's KMS key."""
    return [
        {"Sid": "DvcObjects", "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
         "Resource": f"{bucket_arn}/{team}/*"},
        {"Sid": "DvcList", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket_arn,
         # `<team>/`, not `<team>`: team `fraud` must not list the keys of team `fraud-detection`.
         "Condition": {"StringLike": {"s3:prefix": [f"{team}/", f"{team}/*"]}}},
        {"Sid": "DvcKey", "Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
         "Resource": kms_key_arn},
    ]


def _sid(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("-"))


# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TenancyArgs:
    access: ClusterAccess
    priority_classes: PriorityClasses
    # Who may create pods labelled `job-type: notebook` (NOTEBOOK_SPAWNER); None: nobody (no JupyterHub).
    notebook_spawner: str | None = None


NOTEBOOK_LABEL_POLICY = "mlops-notebook-label"


def notebook_label_validations(spawner: str | None) -> list[dict[str, str]]:
    """CEL for the admission policy: `job-type: notebook` (which opens the notebook egress) only on pods the hub
    creates; a pod that already carries it may be updated by anyone (the hub, controllers adding status)."""
    def notebook(obj: str) -> str:
        return (f"has({obj}.metadata.labels) && '{labels.JOB_TYPE}' in {obj}.metadata.labels && "
                f"{obj}.metadata.labels['{labels.JOB_TYPE}'] == 'notebook'")

    allowed = f"request.userInfo.username == '{spawner}'" if spawner else "false"
    # oldObject is null on CREATE: only read it on UPDATE.
    return [{
        "expression": f"!({notebook('object')}) || (request.operation == 'UPDATE' && {notebook('oldObject')}) "
                      f"|| {allowed}",
        "message": f"Only JupyterHub may start pods labelled {labels.JOB_TYPE}: notebook; that label opens the "
                   "notebook egress (package indexes). Use job-type: training for jobs.",
        "reason": "Forbidden",
    }]


class Tenancy(pulumi.ComponentResource):
    """What every team shares: the PriorityClasses and the region's S3 prefix-list CIDRs."""

    s3_prefix_list_id: pulumi.Output[str]
    s3_cidrs: pulumi.Output[list[str]]
    priority_class_names: list[str]

    def __init__(self, name: str, args: TenancyArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:tenancy:Tenancy", name, None, opts)
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=args.access.provider)
        self.priority_class_names = []
        for role, (value, preemption, description) in PRIORITY_CLASS_SPECS.items():
            class_name = getattr(args.priority_classes, role)
            k8s.scheduling.v1.PriorityClass(
                f"{name}-priority-{role}",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=class_name),
                value=value,
                preemption_policy=preemption,
                global_default=False,
                description=description,
                opts=k8s_opts,
            )
            self.priority_class_names.append(class_name)

        # Team NetworkPolicies trust the `job-type` label; the one that opens extra egress is the hub's to set.
        label_policy = k8s.admissionregistration.v1.ValidatingAdmissionPolicy(
            f"{name}-notebook-label",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=NOTEBOOK_LABEL_POLICY),
            spec=k8s.admissionregistration.v1.ValidatingAdmissionPolicySpecArgs(
                failure_policy="Fail",
                match_constraints=k8s.admissionregistration.v1.MatchResourcesArgs(
                    resource_rules=[k8s.admissionregistration.v1.NamedRuleWithOperationsArgs(
                        api_groups=[""], api_versions=["v1"], operations=["CREATE", "UPDATE"], resources=["pods"])],
                ),
                validations=[k8s.admissionregistration.v1.ValidationArgs(**v)
                             for v in notebook_label_validations(args.notebook_spawner)],
            ),
            opts=k8s_opts,
        )
        k8s.admissionregistration.v1.ValidatingAdmissionPolicyBinding(
            f"{name}-notebook-label",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=NOTEBOOK_LABEL_POLICY),
            spec=k8s.admissionregistration.v1.ValidatingAdmissionPolicyBindingSpecArgs(
                policy_name=NOTEBOOK_LABEL_POLICY,
                validation_actions=["Deny", "Audit"],
                match_resources=k8s.admissionregistration.v1.MatchResourcesArgs(
                    namespace_selector=k8s.meta.v1.LabelSelectorArgs(match_expressions=[
                        k8s.meta.v1.LabelSelectorRequirementArgs(key=labels.TEAM, operator="Exists")]),
                ),
            ),
            opts=pulumi.ResourceOptions.merge(k8s_opts, pulumi.ResourceOptions(depends_on=[label_policy])),
        )

        invoke = pulumi.InvokeOutputOptions(parent=self)
        region = aws.get_region_output(opts=invoke).region
        prefix_list = aws.ec2.get_managed_prefix_list_output(
            name=region.apply(lambda r: f"com.amazonaws.{r}.s3"), opts=invoke)
        self.s3_prefix_list_id = prefix_list.id
        self.s3_cidrs = prefix_list.entries.apply(lambda entries: sorted(e.cidr for e in entries))
        self.register_outputs({
            "s3_prefix_list_id": self.s3_prefix_list_id,
            "s3_cidrs": self.s3_cidrs,
            "priority_class_names": self.priority_class_names,
        })


# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TeamArgs:
    config: TeamConfig
    access: ClusterAccess
    mlflow: ServiceEndpoint                     # training and notebook egress
    serving_ingress: tuple[PodSource, ...]      # the only sources inference pods accept
    jupyterhub_api: ServiceEndpoint             # notebook egress
    notebook_ingress: tuple[PodSource, ...]     # the only sources notebook pods accept
    s3_cidrs: pulumi.Input[list[str]]           # the region's S3 managed prefix list (Tenancy.s3_cidrs)
    sts_cidrs: pulumi.Input[list[str]]          # the STS interface endpoint's addresses (Network.sts_endpoint_cidrs)
    datasets: list[DatasetAccess]               # the datasets this team may read
    dvc: DvcRemote | None = None
    # GPU extended resource -> units the team may request (config.team_gpu_quota): every resource the stack's
    # pools advertise gets a quota line, so no shared GPU resource is ever unlimited.
    gpu_quota: dict[str, int] | None = None
    # Prometheus (endpoints.PROMETHEUS), admitted to inference pods on their metrics ports only; None: not scraped.
    metrics_scraper: MetricsScraper | None = None
    # The team's MLflow user password (Mlflow.team_passwords): the Secret `mlflow-credentials` its pods read.
    mlflow_password: pulumi.Input[str] | None = None


class Team(pulumi.ComponentResource):
    namespace: str
    notebook_role_arn: pulumi.Output[str]
    training_role_arn: pulumi.Output[str]
    serving_role_arn: pulumi.Output[str]
    network_policy_names: list[str]
    access: TeamAccess

    def __init__(self, name: str, args: TeamArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:tenancy:Team", name, None, opts)
        cfg = args.config
        ns = cfg.name
        self.namespace = ns
        provider = args.access.provider

        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=ns, labels={labels.TEAM: ns, **POD_SECURITY_LABELS},
                annotations={labels.GPU_BUDGET_ANNOTATION: f"{cfg.monthly_gpu_budget_usd:g}"}
                if cfg.monthly_gpu_budget_usd is not None else None),
            opts=pulumi.ResourceOptions(parent=self, provider=provider),
        )
        # Everything else in the namespace waits for it.
        in_ns = pulumi.ResourceOptions(parent=self, provider=provider, depends_on=[namespace])

        def meta(object_name: str) -> k8s.meta.v1.ObjectMetaArgs:
            return k8s.meta.v1.ObjectMetaArgs(name=object_name, namespace=ns, labels={labels.TEAM: ns})

        # ---- quota and defaults
        dataset_gib = sum(d.capacity_gib for d in args.datasets)
        hard = {
            "requests.cpu": str(cfg.cpu_quota),
            "requests.memory": f"{cfg.memory_quota_gib}Gi",
            "requests.storage": f"{cfg.storage_quota_gib + dataset_gib}Gi",
            # No team service is exposed outside the cluster; the serving gateway is the way in.
            "services.loadbalancers": "0",
            "services.nodeports": "0",
        }
        gpu_quota = args.gpu_quota if args.gpu_quota is not None else {labels.GPU_RESOURCE: cfg.gpu_quota}
        hard.update({f"requests.{resource}": str(n) for resource, n in sorted(gpu_quota.items())})
        k8s.core.v1.ResourceQuota(f"{name}-quota", metadata=meta("team-quota"),
                                  spec=k8s.core.v1.ResourceQuotaSpecArgs(hard=hard), opts=in_ns)
        k8s.core.v1.LimitRange(
            f"{name}-limits",
            metadata=meta("team-defaults"),
            spec=k8s.core.v1.LimitRangeSpecArgs(limits=[k8s.core.v1.LimitRangeItemArgs(
                type="Container", default=LIMIT_DEFAULTS["default"],
                default_request=LIMIT_DEFAULTS["defaultRequest"])]),
            opts=in_ns,
        )

        # ---- datasets: one read-only claim per dataset, bound to the dataset's static PersistentVolume
        for d in args.datasets:
            k8s.core.v1.PersistentVolumeClaim(
                f"{name}-dataset-{d.name}",
                # The dataset's PV is pre-bound (claimRef) to exactly this claim name in this namespace.
                metadata=meta(d.claim_name or f"dataset-{d.name}"),
                spec=k8s.core.v1.PersistentVolumeClaimSpecArgs(
                    access_modes=["ReadOnlyMany"],
                    storage_class_name=d.storage_class_name,
                    volume_name=d.persistent_volume_name,
                    resources=k8s.core.v1.VolumeResourceRequirementsArgs(requests={"storage": f"{d.capacity_gib}Gi"}),
                ),
                opts=in_ns,
            )

        # ---- identities: IRSA roles scoped to the team's own data, one service account each
        data_statements = [s for d in args.datasets for s in s3_read_statements(d.s3_uri, f"Dataset{_sid(d.name)}")]
        if args.dvc is not None:
            data_policy = pulumi.Output.all(args.dvc.bucket_arn, args.dvc.kms_key_arn).apply(
                lambda a: _policy_document(data_statements + dvc_statements(ns, a[0], a[1])))
        else:
            data_policy = pulumi.Output.from_input(_policy_document(data_statements))
        model_statements = [s for m in cfg.models for s in s3_read_statements(m.location, f"Model{_sid(m.name)}")]
        model_statements += [s for m in cfg.models if m.canary is not None
                             for s in s3_read_statements(m.canary.location, f"Canary{_sid(m.name)}")]
        # Notebooks and training read the team's datasets and DVC prefix; serving reads the team's models.
        # A role with nothing to read gets no policy at all.
        policies = {
            "notebook": data_policy if data_statements or args.dvc else None,
            "training": data_policy if data_statements or args.dvc else None,
            "serving": _policy_document(model_statements) if model_statements else None,
        }
        roles = {}
        for account in SERVICE_ACCOUNTS:
            roles[account] = irsa_role(f"{name}-{account}", args.access.oidc, ns, account, self,
                                       inline_policy=policies[account])
            k8s.core.v1.ServiceAccount(
                f"{name}-sa-{account}",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=account, namespace=ns, labels={labels.TEAM: ns},
                    annotations={"eks.amazonaws.com/role-arn": roles[account].arn}),
                # The workloads do not talk to the Kubernetes API; IRSA mounts its own projected token.
                automount_service_account_token=False,
                opts=in_ns,
            )

        # ---- MLflow: the team's own user (components/mlflow_auth.py); no other team's credentials live here
        if args.mlflow_password is not None:
            k8s.core.v1.Secret(f"{name}-mlflow-credentials", metadata=meta(mlflow_auth.TEAM_SECRET), type="Opaque",
                               string_data=mlflow_auth.team_secret_data(ns, pulumi.Output.secret(args.mlflow_password),
                                                                        args.mlflow.url),
                               opts=in_ns)

        # ---- RBAC for the team's group, and the IAM roles mapped into it
        group = cfg.kubernetes_group
        role = k8s.rbac.v1.Role(f"{name}-member-role", metadata=meta("team-member"), rules=TEAM_MEMBER_RULES,
                                opts=in_ns)
        k8s.rbac.v1.RoleBinding(
            f"{name}-member-binding",
            metadata=meta("team-member"),
            role_ref=k8s.rbac.v1.RoleRefArgs(api_group="rbac.authorization.k8s.io", kind="Role", name="team-member"),
            subjects=[k8s.rbac.v1.SubjectArgs(api_group="rbac.authorization.k8s.io", kind="Group", name=group)],
            opts=pulumi.ResourceOptions(parent=self, provider=provider, depends_on=[role]),
        )
        for i, principal in enumerate(cfg.member_role_arns):
            aws.eks.AccessEntry(f"{name}-member-{i}", cluster_name=args.access.cluster_name, principal_arn=principal,
                                kubernetes_groups=[group], type="STANDARD", opts=pulumi.ResourceOptions(parent=self))

        # ---- NetworkPolicies
        self.network_policy_names = []
        for policy_name, spec in network_policy_specs(cfg, args).items():
            k8s.networking.v1.NetworkPolicy(f"{name}-netpol-{policy_name}", metadata=meta(policy_name), spec=spec,
                                            opts=in_ns)
            self.network_policy_names.append(policy_name)

        self.notebook_role_arn = roles["notebook"].arn
        self.training_role_arn = roles["training"].arn
        self.serving_role_arn = roles["serving"].arn
        self.access = TeamAccess(
            name=ns,
            namespace=ns,
            notebook_service_account="notebook",
            training_service_account="training",
            serving_service_account="serving",
            # The Team itself: depending on it waits for the namespace *and* its quota and NetworkPolicies,
            # so no workload starts before its tenant is isolated.
            namespace_resource=self,
        )
        self.register_outputs({
            "namespace": self.namespace,
            "notebook_role_arn": self.notebook_role_arn,
            "training_role_arn": self.training_role_arn,
            "serving_role_arn": self.serving_role_arn,
            "network_policy_names": self.network_policy_names,
        })


def _policy_document(statements: list[dict[str, Any]]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": statements}) if statements else ""
