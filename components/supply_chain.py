"""Supply chain: where team images live, who may push them, and what may run in a team namespace.

- Per team an ECR repository `<cluster>/<team>`: immutable tags, scan on push (or Amazon Inspector's continuous
  scanning for the whole prefix with `supplyChain.scanning: enhanced`), encrypted with this stack's KMS key, a
  lifecycle policy, and a repository policy that denies every push except from the team's CI role.
- Per team with `ciRepository` a CI role, assumable through GitHub's OIDC provider only by that repository's
  branch running this platform's `.github/workflows/team-image.yml` (which builds, scans with Trivy and fails on
  CRITICAL findings before it pushes). The role may push to its team's repository only.
- Nodes pull with the node role's AmazonEC2ContainerRegistryReadOnly (attached in components/cluster.py); ECR
  decrypts through its own KMS grant, so pulls need no KMS permission.
- A ValidatingAdmissionPolicy (built into Kubernetes, no controller) bound to every namespace labelled
  `mlops.platform/team`: images only from the team ECR repositories or `supplyChain.allowedRegistries` (plus the
  team's `imageRegistries`), never `:latest` or untagged, and GPU requests only with the GPU toleration.

The image rules are pure functions in components/images.py, so the stack config, this admission policy and the
policy pack (policies/images.py) apply the same rules.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components import labels
from components.config import SupplyChainConfig, TeamConfig
from components.endpoints import ClusterAccess
from components.iam import customer_key, web_identity_trust
from components.images import (DIGEST_MARKER, TAG_PATTERN, expand, pin_problem,  # noqa: F401 (re-exported)
                               registry_allowed, spellings)

GITHUB_OIDC_HOST = "token.actions.githubusercontent.com"
TEAM_IMAGE_WORKFLOW = ".github/workflows/team-image.yml"
# Refs of the platform repository whose team-image workflow CI roles trust (branch-protected; tags for releases).
WORKFLOW_REFS = ("refs/heads/main", "refs/tags/*")
ADMISSION_POLICY_NAME = "mlops-team-images"

ECR_PUSH_ACTIONS = ["ecr:CompleteLayerUpload", "ecr:InitiateLayerUpload", "ecr:PutImage", "ecr:UploadLayerPart"]
ECR_READ_ACTIONS = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:DescribeImageScanFindings",
                    "ecr:DescribeImages", "ecr:GetDownloadUrlForLayer"]

# ---------------------------------------------------------------------------------------------------
# Image rules: components/images.py (one implementation for config, admission CEL and policy pack)

GPU_RESOURCES = (labels.GPU_RESOURCE, f"{labels.GPU_RESOURCE}.shared")
MIG_RESOURCE_PREFIX = "nvidia.com/mig-"


def platform_prefix(registry: str, cluster_name: str) -> str:
    """The prefix of this stack's team repositories: `<account>.dkr.ecr.<region>.amazonaws.com/<cluster>/`."""
    return f"{registry}/{cluster_name}/"


def allowlist(registry: str, cluster_name: str, cfg: SupplyChainConfig,
              teams: Sequence[TeamConfig]) -> dict[str, Any]:
    """What the admission policy allows: prefixes for every team namespace, and each team's extra prefixes."""
    return {"prefixes": expand([platform_prefix(registry, cluster_name), *cfg.allowed_registries]),
            "namespaces": {t.name: expand(t.image_registries) for t in teams if t.image_registries}}


# ---------------------------------------------------------------------------------------------------
# The admission policy's CEL


def _cel_str(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _cel_list(values: Iterable[str]) -> str:
    return "[" + ", ".join(_cel_str(v) for v in values) + "]"


def _is_gpu(var: str) -> str:
    return " || ".join([f"{var} == {_cel_str(r)}" for r in GPU_RESOURCES]
                       + [f"{var}.startsWith({_cel_str(MIG_RESOURCE_PREFIX)})"])


def _tolerates_gpu(var: str) -> str:
    key, value, effect = (_cel_str(labels.GPU_TAINT[k]) for k in ("key", "value", "effect"))
    return (f"(!has({var}.effect) || {var}.effect == '' || {var}.effect == {effect}) && "
            f"((has({var}.operator) && {var}.operator == 'Exists' && "
            f"(!has({var}.key) || {var}.key == '' || {var}.key == {key})) || "
            f"(has({var}.key) && {var}.key == {key} && (!has({var}.operator) || {var}.operator == 'Equal') && "
            f"has({var}.value) && {var}.value == {value}))")


def admission_variables(allowed: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, CEL expression) of the policy's variables, in evaluation order; `allowed` as `allowlist()` makes it."""
    optional = "(has(object.spec.{0}) ? object.spec.{0}{1} : [])"
    prefixes = _cel_list(allowed["prefixes"])
    if allowed["namespaces"]:
        exceptions = "{" + ", ".join(f"{_cel_str(ns)}: {_cel_list(p)}"
                                     for ns, p in sorted(allowed["namespaces"].items())) + "}"
        prefixes += (f" + (request.namespace in {exceptions} ? {exceptions}[request.namespace] : [])")
    return [
        ("images", "object.spec.containers.map(c, c.image) + "
                   + optional.format("initContainers", ".map(c, c.image)") + " + "
                   + optional.format("ephemeralContainers", ".map(c, c.image)")),
        ("allowedPrefixes", prefixes),
        ("untrusted", "variables.images.filter(i, !variables.allowedPrefixes.exists(p, i.startsWith(p)))"),
        ("unpinned", f"variables.images.filter(i, i.endsWith(':latest') || "
                     f"!(i.contains({_cel_str(DIGEST_MARKER)}) || i.matches({_cel_str(TAG_PATTERN)})))"),
        ("requestsGpu", "(object.spec.containers + " + optional.format("initContainers", "") + ").exists(c, "
                        "has(c.resources) && ("
                        f"(has(c.resources.requests) && c.resources.requests.exists(r, {_is_gpu('r')})) || "
                        f"(has(c.resources.limits) && c.resources.limits.exists(r, {_is_gpu('r')}))))"),
        ("toleratesGpu", f"has(object.spec.tolerations) && object.spec.tolerations.exists(t, {_tolerates_gpu('t')})"),
    ]


GPU_TAINT_TEXT = f"{labels.GPU_TAINT['key']}={labels.GPU_TAINT['value']}:{labels.GPU_TAINT['effect']}"

# (expression, messageExpression, message, reason)
ADMISSION_VALIDATIONS = [
    ("size(variables.untrusted) == 0",
     "'image ' + variables.untrusted[0] + ' is not from an allowed registry: build it with the team-image "
     "workflow into the team ECR repository, or ask for its registry in supplyChain.allowedRegistries'",
     "Images must come from the team ECR repositories or supplyChain.allowedRegistries.", "Forbidden"),
    ("size(variables.unpinned) == 0",
     "'image ' + variables.unpinned[0] + ' is not pinned: use a version tag other than latest, or a digest'",
     "Images must be pinned to a version tag other than latest, or to a digest.", "Invalid"),
    ("!variables.requestsGpu || variables.toleratesGpu",
     None,
     f"Pods that request {', '.join(GPU_RESOURCES)} or {MIG_RESOURCE_PREFIX}* must tolerate the GPU taint "
     f"{GPU_TAINT_TEXT}.", "Invalid"),
]


# ---------------------------------------------------------------------------------------------------
# AWS documents


def lifecycle_policy(cfg: SupplyChainConfig) -> str:
    """Untagged images (left over by re-pushes) expire first; beyond `maxImages` the oldest go."""
    return json.dumps({"rules": [
        {"rulePriority": 1, "description": f"Expire untagged images after {cfg.untagged_image_days} days",
         "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days",
                       "countNumber": cfg.untagged_image_days},
         "action": {"type": "expire"}},
        {"rulePriority": 2, "description": f"Keep the newest {cfg.max_images} images",
         "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": cfg.max_images},
         "action": {"type": "expire"}},
    ]})


def repository_policy(ci_role_arn: str | None) -> str:
    """Nobody pushes except the team's CI role (nobody at all when the team has none)."""
    statement: dict[str, Any] = {"Sid": "PushOnlyFromTheTeamCiRole", "Effect": "Deny", "Principal": "*",
                                 "Action": ECR_PUSH_ACTIONS}
    if ci_role_arn:
        statement["Condition"] = {"StringNotEquals": {"aws:PrincipalArn": ci_role_arn}}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def ci_trust_policy(provider_arn: str, team: TeamConfig, workflow_repository: str) -> str:
    """Only the team's repository, on its branch, running the platform's team-image workflow."""
    return json.dumps(web_identity_trust(provider_arn, {
        f"{GITHUB_OIDC_HOST}:aud": "sts.amazonaws.com",
        f"{GITHUB_OIDC_HOST}:sub": f"repo:{team.ci_repository}:ref:refs/heads/{team.ci_branch}",
    }, {
        f"{GITHUB_OIDC_HOST}:job_workflow_ref": [
            f"{workflow_repository}/{TEAM_IMAGE_WORKFLOW}@{ref}" for ref in WORKFLOW_REFS],
    }))


def ci_push_policy(repository_arn: str) -> str:
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "EcrLogin", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
            {"Sid": "PushToTheTeamRepository", "Effect": "Allow",
             "Action": sorted(ECR_PUSH_ACTIONS + ECR_READ_ACTIONS), "Resource": repository_arn},
        ],
    })


# ---------------------------------------------------------------------------------------------------
# The component


@dataclass(frozen=True)
class SupplyChainArgs:
    config: SupplyChainConfig
    teams: Sequence[TeamConfig]
    cluster_name: str
    access: ClusterAccess
    protect_data: bool


class SupplyChain(pulumi.ComponentResource):
    registry: pulumi.Output[str]                    # <account>.dkr.ecr.<region>.amazonaws.com
    repository_prefix: pulumi.Output[str]           # what the admission policy allows from this account's ECR
    repository_urls: dict[str, pulumi.Output[str]]  # team -> repository URL
    ci_role_arns: dict[str, pulumi.Output[str]]     # team -> CI role ARN (teams with ciRepository)
    kms_key_arn: pulumi.Output[str]
    github_oidc_provider_arn: pulumi.Output[str] | None
    admission_policy_name: str

    def __init__(self, name: str, args: SupplyChainArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:supply_chain:SupplyChain", name, None, opts)
        cfg = args.config
        child = pulumi.ResourceOptions(parent=self)
        data = pulumi.ResourceOptions(parent=self, protect=args.protect_data)
        invoke = pulumi.InvokeOutputOptions(parent=self)
        account = aws.get_caller_identity_output(opts=invoke).account_id
        region = aws.get_region_output(opts=invoke).region
        self.registry = pulumi.Output.concat(account, ".dkr.ecr.", region, ".amazonaws.com")
        self.repository_prefix = self.registry.apply(lambda r: platform_prefix(r, args.cluster_name))

        key = customer_key(f"{name}-images", f"Encryption of the team image repositories {args.cluster_name}/* in ECR",
                           data)
        aws.kms.Alias(f"{name}-images", name=f"alias/{args.cluster_name}-images", target_key_id=key.key_id,
                      opts=child)

        if cfg.scanning == "enhanced":
            # Registry-wide: this replaces the account's scanning rules in this region (one configuration each).
            aws.ecr.RegistryScanningConfiguration(
                f"{name}-scanning",
                scan_type="ENHANCED",
                rules=[aws.ecr.RegistryScanningConfigurationRuleArgs(
                    scan_frequency="CONTINUOUS_SCAN",
                    repository_filters=[aws.ecr.RegistryScanningConfigurationRuleRepositoryFilterArgs(
                        filter=f"{args.cluster_name}/*", filter_type="WILDCARD")],
                )],
                opts=child,
            )

        pushers = [t for t in args.teams if t.ci_repository]
        provider_arn: pulumi.Output[str] | None = None
        self.github_oidc_provider_arn = None
        if pushers and cfg.github_oidc_provider_arn:
            provider_arn = pulumi.Output.from_input(cfg.github_oidc_provider_arn)
        elif pushers:
            provider = aws.iam.OpenIdConnectProvider(
                f"{name}-github", url=f"https://{GITHUB_OIDC_HOST}", client_id_lists=["sts.amazonaws.com"],
                opts=child)
            provider_arn = self.github_oidc_provider_arn = provider.arn

        self.repository_urls = {}
        self.ci_role_arns = {}
        for team in args.teams:
            self._team(name, args, team, key, provider_arn, data, child)

        self.admission_policy_name = ADMISSION_POLICY_NAME
        self._admission(name, args)

        self.kms_key_arn = key.arn
        self.register_outputs({
            "registry": self.registry,
            "repository_prefix": self.repository_prefix,
            "repository_urls": self.repository_urls,
            "ci_role_arns": self.ci_role_arns,
            "kms_key_arn": self.kms_key_arn,
            "github_oidc_provider_arn": self.github_oidc_provider_arn,
            "admission_policy_name": self.admission_policy_name,
        })

    def _team(self, name: str, args: SupplyChainArgs, team: TeamConfig, key: aws.kms.Key,
              provider_arn: pulumi.Output[str] | None, data: pulumi.ResourceOptions,
              child: pulumi.ResourceOptions) -> None:
        cfg = args.config
        prefix = f"{name}-{team.name}"
        repository = aws.ecr.Repository(
            prefix,
            name=f"{args.cluster_name}/{team.name}",
            image_tag_mutability="IMMUTABLE",
            # Basic scanning on push; with `scanning: enhanced` the registry's continuous scanning takes over.
            image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(scan_on_push=True),
            encryption_configurations=[aws.ecr.RepositoryEncryptionConfigurationArgs(
                encryption_type="KMS", kms_key=key.arn)],
            force_delete=not args.protect_data,
            tags={labels.TEAM: team.name},
            opts=data,
        )
        aws.ecr.LifecyclePolicy(prefix, repository=repository.name, policy=lifecycle_policy(cfg), opts=child)

        ci_role_arn: pulumi.Output[str] | None = None
        if team.ci_repository and provider_arn is not None:
            workflow_repository = cfg.workflow_repository or ""   # required by config whenever ciRepository is set
            role = aws.iam.Role(
                f"{prefix}-ci",
                description=f"CI of {team.ci_repository}@{team.ci_branch}: push images to {args.cluster_name}/"
                            f"{team.name} through the team-image workflow",
                assume_role_policy=provider_arn.apply(lambda arn: ci_trust_policy(arn, team, workflow_repository)),
                max_session_duration=3600,
                tags={labels.TEAM: team.name},
                opts=child,
            )
            aws.iam.RolePolicy(f"{prefix}-ci", role=role.id, policy=repository.arn.apply(ci_push_policy),
                               opts=child)
            ci_role_arn = role.arn
            self.ci_role_arns[team.name] = role.arn
        aws.ecr.RepositoryPolicy(
            prefix,
            repository=repository.name,
            policy=pulumi.Output.from_input(ci_role_arn).apply(repository_policy),
            opts=child,
        )
        self.repository_urls[team.name] = repository.repository_url

    def _admission(self, name: str, args: SupplyChainArgs) -> None:
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=args.access.provider,
                                          depends_on=list(args.access.depends_on))
        allowed = self.registry.apply(lambda r: allowlist(r, args.cluster_name, args.config, args.teams))
        variables = allowed.apply(admission_variables)
        policy = k8s.admissionregistration.v1.ValidatingAdmissionPolicy(
            f"{name}-admission",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=ADMISSION_POLICY_NAME,
                labels={"app.kubernetes.io/managed-by": "pulumi", "app.kubernetes.io/part-of": "mlops-platform"},
                # The allowlist as data, for the policy pack (policies/images.py) and for people reading the cluster.
                annotations={labels.IMAGE_ALLOWLIST: allowed.apply(lambda a: json.dumps(a, sort_keys=True))},
            ),
            spec=k8s.admissionregistration.v1.ValidatingAdmissionPolicySpecArgs(
                failure_policy="Fail",
                match_constraints=k8s.admissionregistration.v1.MatchResourcesArgs(
                    resource_rules=[k8s.admissionregistration.v1.NamedRuleWithOperationsArgs(
                        api_groups=[""], api_versions=["v1"], operations=["CREATE", "UPDATE"],
                        resources=["pods", "pods/ephemeralcontainers"],
                    )],
                ),
                variables=variables.apply(lambda vs: [{"name": n, "expression": e} for n, e in vs]),
                validations=[k8s.admissionregistration.v1.ValidationArgs(
                    expression=expr, message_expression=message_expr, message=message, reason=reason)
                    for expr, message_expr, message, reason in ADMISSION_VALIDATIONS],
            ),
            opts=k8s_opts,
        )
        # Audit as well, so violations also land in the API server's audit log.
        actions = [args.config.admission_action, "Audit"]
        k8s.admissionregistration.v1.ValidatingAdmissionPolicyBinding(
            f"{name}-admission",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=ADMISSION_POLICY_NAME),
            spec=k8s.admissionregistration.v1.ValidatingAdmissionPolicyBindingSpecArgs(
                policy_name=ADMISSION_POLICY_NAME,
                validation_actions=actions,
                match_resources=k8s.admissionregistration.v1.MatchResourcesArgs(
                    namespace_selector=k8s.meta.v1.LabelSelectorArgs(match_expressions=[
                        k8s.meta.v1.LabelSelectorRequirementArgs(key=labels.TEAM, operator="Exists")]),
                ),
            ),
            opts=pulumi.ResourceOptions.merge(k8s_opts, pulumi.ResourceOptions(depends_on=[policy])),
        )
