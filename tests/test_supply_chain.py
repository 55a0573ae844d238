"""Supply chain: team ECR repositories, CI push roles trusting only the scanning workflow, and the image admission
policy, whose CEL is evaluated here on sample pods with a CEL evaluator (cel-python)."""

from __future__ import annotations

import copy
import json
import re

import celpy
import pytest
import yaml
from celpy import celtypes, json_to_cel

from components import labels
from components.config import parse_config
from components.supply_chain import (ADMISSION_POLICY_NAME, ECR_PUSH_ACTIONS, GITHUB_OIDC_HOST, TEAM_IMAGE_WORKFLOW,
                                     pin_problem, registry_allowed)
from preview.aws_mocks import ACCOUNT_ID
from tests import schemas
from tests.conftest import PROJECT_DIR, Rendered, assert_config_problem, run_config, stack_yaml, raw_config as raw

PREFIX = "mlops-platform:"
REPOSITORY = "aws:ecr/repository:Repository"
ROLE = "aws:iam/role:Role"
DEV_ECR = f"{ACCOUNT_ID}.dkr.ecr.us-west-2.amazonaws.com"
EXISTING_PROVIDER = f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/{GITHUB_OIDC_HOST}"


def team_names(stack: str) -> list[str]:
    return [t["name"] for t in stack_yaml(stack)[PREFIX + "teams"]]


def doc(value: str) -> dict:
    return json.loads(value)


@pytest.fixture(scope="module")
def variant() -> Rendered:
    """dev with a team exception, Warn, and the account's existing GitHub OIDC provider."""
    config = stack_yaml("dev")
    config[PREFIX + "teams"][1]["imageRegistries"] = ["ghcr.io/acme/"]
    config[PREFIX + "supplyChain"] = {**config[PREFIX + "supplyChain"], "admissionAction": "Warn",
                                      "githubOidcProviderArn": EXISTING_PROVIDER}
    return Rendered(run_config(config, stack="dev"))


# ---- AWS: repositories, scanning, encryption, who may push and pull ---------------------------------------


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_team_gets_an_immutable_scanned_kms_encrypted_repository(stack, request):
    rendered = request.getfixturevalue(stack)
    key = rendered.one("aws:kms/key:Key", "supply-chain-images")
    assert key.inputs["enableKeyRotation"] is True
    key_arn = f"arn:aws:kms:{'us-west-2' if stack == 'dev' else 'us-east-1'}:{ACCOUNT_ID}:key/"
    repos = {r.inputs["name"]: r for r in rendered.of_type(REPOSITORY)}
    assert set(repos) == {f"mlops-{stack}/{t}" for t in team_names(stack)}
    for repo in repos.values():
        assert repo.inputs["imageTagMutability"] == "IMMUTABLE"
        assert repo.inputs["imageScanningConfiguration"] == {"scanOnPush": True}
        (enc,) = repo.inputs["encryptionConfigurations"]
        assert enc["encryptionType"] == "KMS" and enc["kmsKey"].startswith(key_arn)
        assert repo.protect is (stack == "prod") and repo.inputs["forceDelete"] is (stack == "dev")
    assert key.protect is (stack == "prod")


def test_lifecycle_expires_untagged_images_then_keeps_the_newest(dev):
    for policy in dev.of_type("aws:ecr/lifecyclePolicy:LifecyclePolicy"):
        rules = sorted(doc(policy.inputs["policy"])["rules"], key=lambda r: r["rulePriority"])
        assert [r["selection"]["tagStatus"] for r in rules] == ["untagged", "any"]   # "any" must come last
        assert rules[0]["selection"] == {"tagStatus": "untagged", "countType": "sinceImagePushed",
                                         "countUnit": "days", "countNumber": 7}
        assert rules[1]["selection"] == {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 500}
        assert all(r["action"] == {"type": "expire"} for r in rules)


def test_enhanced_scanning_covers_the_team_repositories_in_prod_only(dev, prod):
    assert dev.of_type("aws:ecr/registryScanningConfiguration:RegistryScanningConfiguration") == []
    scanning = prod.one("aws:ecr/registryScanningConfiguration:RegistryScanningConfiguration")
    assert scanning.inputs["scanType"] == "ENHANCED"
    assert scanning.inputs["rules"] == [{"scanFrequency": "CONTINUOUS_SCAN", "repositoryFilters": [
        {"filter": "mlops-prod/*", "filterType": "WILDCARD"}]}]


def test_nodes_pull_with_the_read_only_ecr_policy(dev):
    pull = {"arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
            "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryPullOnly"}
    attachments = dev.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    for node_role in ("cluster-node-", "karpenter-node-"):   # managed node groups, Karpenter's nodes
        assert pull & {r.inputs["policyArn"] for r in attachments if r.name.startswith(node_role)}, node_role


def ci_role(rendered: Rendered, team: str):
    return rendered.one(ROLE, f"supply-chain-{team}-ci")


@pytest.fixture(scope="module")
def declares_provider() -> Rendered:
    """prod in an account without a GitHub OIDC provider yet (no bootstrap): the stack declares it."""
    config = stack_yaml("prod")
    config[PREFIX + "supplyChain"] = {k: v for k, v in config[PREFIX + "supplyChain"].items()
                                      if k != "githubOidcProviderArn"}
    return Rendered(run_config(config, stack="prod"))


def test_ci_role_trusts_only_the_team_branch_running_the_platform_workflow(declares_provider):
    prod = declares_provider
    provider = prod.one("aws:iam/openIdConnectProvider:OpenIdConnectProvider", "supply-chain-github")
    assert provider.inputs["url"] == f"https://{GITHUB_OIDC_HOST}"
    assert provider.inputs["clientIdLists"] == ["sts.amazonaws.com"]
    (statement,) = doc(ci_role(prod, "reco-lab").inputs["assumeRolePolicy"])["Statement"]
    assert statement["Principal"] == {"Federated": EXISTING_PROVIDER}
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Condition"] == {
        "StringEquals": {f"{GITHUB_OIDC_HOST}:aud": "sts.amazonaws.com",
                         f"{GITHUB_OIDC_HOST}:sub": "repo:acme/recommender:ref:refs/heads/release"},
        "StringLike": {f"{GITHUB_OIDC_HOST}:job_workflow_ref": [
            f"acme/mlops-platform/{TEAM_IMAGE_WORKFLOW}@refs/heads/main",
            f"acme/mlops-platform/{TEAM_IMAGE_WORKFLOW}@refs/tags/*"]},
    }
    assert (PROJECT_DIR / TEAM_IMAGE_WORKFLOW).is_file()


def test_ci_role_may_push_to_its_own_repository_only(prod):
    (policy,) = [r for r in prod.of_type("aws:iam/rolePolicy:RolePolicy")
                 if r.name == "supply-chain-risk-lab-ci"]
    statements = {s["Sid"]: s for s in doc(policy.inputs["policy"])["Statement"]}
    assert statements["EcrLogin"]["Action"] == "ecr:GetAuthorizationToken" and statements["EcrLogin"]["Resource"] == "*"
    push = statements["PushToTheTeamRepository"]
    assert set(ECR_PUSH_ACTIONS) <= set(push["Action"])
    assert push["Resource"] == f"arn:aws:ecr:us-east-1:{ACCOUNT_ID}:repository/mlops-prod/risk-lab"
    assert set(statements) == {"EcrLogin", "PushToTheTeamRepository"}


def test_repository_policy_denies_pushes_from_anyone_but_the_team_ci_role(prod):
    policies = {r.inputs["repository"]: doc(r.inputs["policy"])["Statement"]
                for r in prod.of_type("aws:ecr/repositoryPolicy:RepositoryPolicy")}
    (fraud,) = policies["mlops-prod/risk-lab"]
    assert fraud["Effect"] == "Deny" and fraud["Principal"] == "*" and set(fraud["Action"]) == set(ECR_PUSH_ACTIONS)
    role_name = re.escape("supply-chain-risk-lab-ci")
    assert re.fullmatch(rf"arn:aws:iam::{ACCOUNT_ID}:role/{role_name}-[0-9a-f]+",
                        fraud["Condition"]["StringNotEquals"]["aws:PrincipalArn"])
    # forecast-lab has no ciRepository: nobody pushes.
    (forecast,) = policies["mlops-prod/forecast-lab"]
    assert forecast["Effect"] == "Deny" and "Condition" not in forecast
    assert {r.name for r in prod.of_type(ROLE) if r.name.endswith("-ci") and "supply-chain" in r.name} == {
        "supply-chain-risk-lab-ci", "supply-chain-reco-lab-ci"}


def test_an_existing_github_provider_is_used_instead_of_declaring_one(variant):
    providers = [r.name for r in variant.of_type("aws:iam/openIdConnectProvider:OpenIdConnectProvider")]
    assert "supply-chain-github" not in providers and providers == ["cluster-oidc"]
    (statement,) = doc(ci_role(variant, "risk-lab").inputs["assumeRolePolicy"])["Statement"]
    assert statement["Principal"] == {"Federated": EXISTING_PROVIDER}


def test_stack_exports_repositories_and_ci_roles(prod):
    outputs = prod.run.outputs
    assert outputs["imageRepositories"] == {t: f"{ACCOUNT_ID}.dkr.ecr.us-east-1.amazonaws.com/mlops-prod/{t}"
                                            for t in team_names("prod")}
    assert set(outputs["imageCiRoles"]) == {"risk-lab", "reco-lab"}


# ---- the admission policy: objects, binding, schema ------------------------------------------------------


def test_binding_selects_team_namespaces_and_denies(dev):
    policy = dev.obj("ValidatingAdmissionPolicy", ADMISSION_POLICY_NAME)
    binding = dev.obj("ValidatingAdmissionPolicyBinding", ADMISSION_POLICY_NAME)
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny", "Audit"]
    assert binding["spec"]["matchResources"]["namespaceSelector"] == {
        "matchExpressions": [{"key": labels.TEAM, "operator": "Exists"}]}
    assert policy["spec"]["failurePolicy"] == "Fail"
    (rule,) = policy["spec"]["matchConstraints"]["resourceRules"]
    assert rule["resources"] == ["pods", "pods/ephemeralcontainers"] and rule["operations"] == ["CREATE", "UPDATE"]
    # Every team namespace carries the label the binding selects; the platform's own namespaces do not.
    selected = {n["metadata"]["name"] for n in dev.objects("Namespace")
                if labels.TEAM in n["metadata"].get("labels", {})}
    assert selected == set(team_names("dev"))


def test_warn_mode_warns_instead_of_denying(variant):
    binding = variant.obj("ValidatingAdmissionPolicyBinding", ADMISSION_POLICY_NAME)
    assert binding["spec"]["validationActions"] == ["Warn", "Audit"]


def test_admission_objects_validate_and_the_validator_sees_mistakes(dev, schemas_dir):
    policy = dev.obj("ValidatingAdmissionPolicy", ADMISSION_POLICY_NAME)
    binding = dev.obj("ValidatingAdmissionPolicyBinding", ADMISSION_POLICY_NAME)
    assert schemas.errors(policy, schemas_dir) == [] and schemas.errors(binding, schemas_dir) == []
    broken = copy.deepcopy(policy)
    broken["spec"]["validations"][0]["expresion"] = "true"
    assert schemas.errors(broken, schemas_dir)


# ---- the admission policy's CEL, evaluated -------------------------------------------------------------

CEL = celpy.Environment()


def cel(expression: str, activation: dict):
    result = CEL.program(CEL.compile(expression)).evaluate(activation)
    if isinstance(result, celpy.CELEvalError):
        raise AssertionError(f"CEL error in {expression}: {result}")
    return result


def admit(policy: dict, pod: dict, namespace: str = "risk-lab") -> list[str]:
    """The messages the API server would return for `pod` in `namespace` (empty: admitted)."""
    activation = {"object": json_to_cel(pod), "request": json_to_cel({"namespace": namespace,
                                                                      "operation": "CREATE"})}
    variables: dict = {}
    for v in policy["spec"]["variables"]:
        variables[celtypes.StringType(v["name"])] = cel(v["expression"], {
            **activation, "variables": celtypes.MapType(variables)})
    activation["variables"] = celtypes.MapType(variables)
    messages = []
    for check in policy["spec"]["validations"]:
        allowed = cel(check["expression"], activation)
        assert isinstance(allowed, celtypes.BoolType), check["expression"]
        if not allowed:
            messages.append(str(cel(check["messageExpression"], activation)) if check.get("messageExpression")
                            else check["message"])
    return messages


def pod(*images: str, init: tuple[str, ...] = (), gpu: str | None = None, tolerations: list | None = None) -> dict:
    def container(i: int, image: str, prefix: str = "c") -> dict:
        c = {"name": f"{prefix}{i}", "image": image}
        if gpu and prefix == "c" and i == 0:
            c["resources"] = {"limits": {gpu: "1"}, "requests": {gpu: "1", "cpu": "2"}}
        return c

    spec = {"containers": [container(i, im) for i, im in enumerate(images)]}
    if init:
        spec["initContainers"] = [container(i, im, "init") for i, im in enumerate(init)]
    if tolerations is not None:
        spec["tolerations"] = tolerations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "risk-lab"}, "spec": spec}


TEAM_IMAGE = f"{DEV_ECR}/mlops-dev/risk-lab:training-3f2a9c1"
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


@pytest.fixture(scope="module")
def vap(dev) -> dict:
    return dev.obj("ValidatingAdmissionPolicy", ADMISSION_POLICY_NAME)


def test_team_ecr_image_is_admitted(vap):
    assert admit(vap, pod(TEAM_IMAGE)) == []
    assert admit(vap, pod(f"{DEV_ECR}/mlops-dev/risk-lab@sha256:{'a' * 64}")) == []


def test_docker_hub_latest_is_rejected_for_registry_and_tag(vap):
    assert admit(vap, pod(TEAM_IMAGE, "docker.io/library/python:latest")) == [
        "image docker.io/library/python:latest is not from an allowed registry: build it with the team-image "
        "workflow into the team ECR repository, or ask for its registry in supplyChain.allowedRegistries",
        "image docker.io/library/python:latest is not pinned: use a version tag other than latest, or a digest"]


@pytest.mark.parametrize("image", [
    "nvcr.io/nvidia/pytorch",                                           # untagged
    "public.ecr.aws/docker/library/python:latest",
    f"{DEV_ECR}/mlops-dev/risk-lab",
])
def test_allowed_registry_but_unpinned_is_rejected(vap, image):
    (message,) = admit(vap, pod(image))
    assert message == f"image {image} is not pinned: use a version tag other than latest, or a digest"


@pytest.mark.parametrize("image", [
    "nvcr.io.evil.example/nvidia/pytorch:24.05-py3",                    # look-alike host
    f"{DEV_ECR}/other-team-stuff/x:1.0",                                # this account, not the team repositories
    "999999999999.dkr.ecr.us-west-2.amazonaws.com/mlops-dev/risk-lab:1.0",   # another account
    f"{ACCOUNT_ID}.dkr.ecr.eu-west-1.amazonaws.com/mlops-dev/risk-lab:1.0",   # another region
    "ghcr.io/acme/trainer:1.0",                                         # only the exception team may
    "python:3.12",                                                      # Docker Hub library short name
])
def test_images_from_elsewhere_are_rejected(vap, image):
    (message,) = admit(vap, pod(image))
    assert message.startswith(f"image {image} is not from an allowed registry")


@pytest.mark.parametrize("image", [
    "nvcr.io/nvidia/pytorch:24.05-py3",
    "public.ecr.aws/docker/library/python:3.12-slim",
    "kserve/storage-initializer:v0.20.0",                               # injected by KServe, Docker Hub short name
    "docker.io/kserve/xgbserver:v0.20.0",
    "gcr.io/knative-releases/knative.dev/serving/cmd/queue@sha256:" + "b" * 64,
])
def test_allowlisted_public_images_are_admitted(vap, image):
    assert admit(vap, pod(image)) == []


def test_init_and_ephemeral_containers_are_checked(vap):
    assert len(admit(vap, pod(TEAM_IMAGE, init=("busybox",)))) == 2
    debug = pod(TEAM_IMAGE)
    debug["spec"]["ephemeralContainers"] = [{"name": "debug", "image": "docker.io/nicolaka/netshoot:v0.13"}]
    (message,) = admit(vap, debug)
    assert "netshoot" in message and "not from an allowed registry" in message


GPU_MESSAGE = ("Pods that request nvidia.com/gpu, nvidia.com/gpu.shared or nvidia.com/mig-* must tolerate the GPU "
               "taint nvidia.com/gpu=true:NoSchedule.")


@pytest.mark.parametrize("resource", ["nvidia.com/gpu", "nvidia.com/mig-1g.10gb", "nvidia.com/gpu.shared"])
def test_gpu_pod_without_toleration_is_rejected(vap, resource):
    assert admit(vap, pod(TEAM_IMAGE, gpu=resource)) == [GPU_MESSAGE]
    assert admit(vap, pod(TEAM_IMAGE, gpu=resource, tolerations=[{"key": "other", "operator": "Exists"}])) == [
        GPU_MESSAGE]
    assert admit(vap, pod(TEAM_IMAGE, gpu=resource, tolerations=[GPU_TOLERATION])) == []


@pytest.mark.parametrize("toleration, admitted", [
    (GPU_TOLERATION, True),
    ({"key": "nvidia.com/gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}, True),
    ({"key": "nvidia.com/gpu", "operator": "Exists"}, True),                  # every effect
    ({"operator": "Exists"}, True),                                           # tolerates every taint
    ({"key": "nvidia.com/gpu", "operator": "Equal", "value": "false", "effect": "NoSchedule"}, False),
    ({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoExecute"}, False),
])
def test_toleration_semantics(vap, toleration, admitted):
    assert (admit(vap, pod(TEAM_IMAGE, gpu="nvidia.com/gpu", tolerations=[toleration])) == []) is admitted


def test_cpu_pods_need_no_toleration(vap):
    assert admit(vap, pod(TEAM_IMAGE, "nvcr.io/nvidia/pytorch:24.05-py3")) == []


def test_team_exception_applies_to_its_namespace_only(variant):
    policy = variant.obj("ValidatingAdmissionPolicy", ADMISSION_POLICY_NAME)
    image = "ghcr.io/acme/trainer:1.0"
    assert admit(policy, pod(image), namespace="reco-lab") == []
    assert admit(policy, pod(image), namespace="risk-lab") != []
    allowlist = json.loads(policy["metadata"]["annotations"][labels.IMAGE_ALLOWLIST])
    assert allowlist["namespaces"] == {"reco-lab": ["ghcr.io/acme/"]}


# The Python rules the policy pack uses agree with the CEL on every sample.
SAMPLES = ["nvcr.io/nvidia/pytorch:24.05-py3", "nvcr.io/nvidia/pytorch", "python:latest", "python",
           "registry.example.com:5000/team/img", "registry.example.com:5000/team/img:1.2", f"x@sha256:{'c' * 64}",
           "x:latest@sha256:" + "d" * 64, "kserve/xgbserver:v0.20.0", "ghcr.io/mlflow/mlflow:v3.9.0-full",
           f"{DEV_ECR}/mlops-dev/risk-lab:training-1", "docker.io/library/python:latest"]


@pytest.mark.parametrize("image", SAMPLES)
def test_python_rules_match_the_cel(vap, image):
    messages = admit(vap, pod(image))
    prefixes = json.loads(vap["metadata"]["annotations"][labels.IMAGE_ALLOWLIST])["prefixes"]
    assert any("not pinned" in m for m in messages) == (pin_problem(image) is not None)
    assert any("not from an allowed registry" in m for m in messages) == (not registry_allowed(image, prefixes))


# ---- the CI workflow ----------------------------------------------------------------------------------


def workflow() -> dict:
    wf = yaml.safe_load((PROJECT_DIR / TEAM_IMAGE_WORKFLOW).read_text())
    wf["on"] = wf.pop(True, wf.get("on"))
    return wf


def test_workflow_scans_with_a_pinned_trivy_and_fails_on_critical_before_pushing():
    wf = workflow()
    assert set(wf["on"]) == {"workflow_call"}
    assert {"team", "role-to-assume", "repository", "aws-region"} <= {
        k for k, v in wf["on"]["workflow_call"]["inputs"].items() if v.get("required")}
    steps = wf["jobs"]["image"]["steps"]
    uses = [s.get("uses", "") for s in steps]
    scan_at = next(i for i, u in enumerate(uses) if u.startswith("aquasecurity/trivy-action@"))
    assert re.fullmatch(r"aquasecurity/trivy-action@[0-9a-f]{40}", uses[scan_at])   # pinned by commit
    scan = steps[scan_at]["with"]
    assert scan["severity"] == "CRITICAL" and scan["exit-code"] == "1" and scan["format"] == "table"
    assert re.fullmatch(r"v\d+\.\d+\.\d+", scan["version"])
    push_at = next(i for i, s in enumerate(steps) if s.get("id") == "push")
    creds_at = next(i for i, u in enumerate(uses) if u.startswith("aws-actions/configure-aws-credentials@"))
    build_at = next(i for i, s in enumerate(steps) if s.get("name") == "Build")
    assert build_at < scan_at < creds_at < push_at   # no credentials until the scan passed
    assert steps[creds_at]["with"]["role-to-assume"] == "${{ inputs.role-to-assume }}"
    report = next(s for s in steps if s.get("name") == "Report")
    assert "always()" in report["if"] and "GITHUB_STEP_SUMMARY" in report["run"]
    assert wf["jobs"]["image"]["permissions"]["id-token"] == "write"


# ---- config rules ------------------------------------------------------------------------------------




@pytest.mark.parametrize("stack, mutate, expected", [
    ("dev", lambda c: c["supplyChain"].pop("workflowRepository"),
     "supplyChain.workflowRepository: is required when a team sets ciRepository (teams[0].ciRepository)"),
    ("prod", lambda c: c["supplyChain"].update(admissionAction="Warn"),
     "supplyChain.admissionAction: must be 'Deny' in prod"),
    ("dev", lambda c: c["supplyChain"].update(allowedRegistries=["docker.io/"]),
     "supplyChain.allowedRegistries[0]: would allow every image anyone publishes on docker.io"),
    ("dev", lambda c: c["supplyChain"].update(allowedRegistries=["nvcr.io/nvidia"]),
     "supplyChain.allowedRegistries[0]: must be a registry host with a dot"),
    ("dev", lambda c: c["teams"][0].update(imageRegistries=["https://ghcr.io/acme/"]),
     "teams[0].imageRegistries[0]: must be a registry host with a dot"),
    ("dev", lambda c: c["teams"][0].update(ciRepository="fraud-models"),
     "teams[0].ciRepository: must be a GitHub repository as owner/name"),
    ("dev", lambda c: c["teams"][0].update(ciBranch="release/*"),
     "teams[0].ciBranch: must be a branch name without wildcards"),
    ("dev", lambda c: c["supplyChain"].update(githubOidcProviderArn="arn:aws:iam::123456789012:oidc-provider/x"),
     "supplyChain.githubOidcProviderArn: must match the pattern"),
    ("dev", lambda c: c["supplyChain"].update(scanning="deep"), "supplyChain.scanning: must be one of"),
    ("dev", lambda c: c["supplyChain"].update(maxImages=3), "supplyChain.maxImages: must be at least 10"),
    ("dev", lambda c: c["supplyChain"].update(alowedRegistries=[]),
     "supplyChain.alowedRegistries: is not a known setting; did you mean 'allowedRegistries'?"),
])
def test_config_rules_name_their_key_path(stack, mutate, expected):
    config = raw(stack)
    mutate(config)
    assert_config_problem(config, expected)


def test_defaults_are_valid_and_private_ecr_hosts_are_accepted():
    config = raw("dev")
    config["supplyChain"]["allowedRegistries"] = ["763104351884.dkr.ecr.us-west-2.amazonaws.com/",
                                                  "registry.example.com:5000/ml/"]
    config["training"] = {"enabled": False}   # its operator's images would need those registries allowed
    assert parse_config(config).supply_chain.allowed_registries[1] == "registry.example.com:5000/ml/"
    assert parse_config({"environment": "dev"}).supply_chain.admission_action == "Deny"
