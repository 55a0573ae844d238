"""`supplyChain`: team image repositories, CI push roles and image admission (components/supply_chain.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from components.config.problems import Problem
from components.config.types import GithubRepository, Model, RegistryPrefix

if TYPE_CHECKING:
    from components.config.platform import PlatformConfig

# Images that may run besides the stack's own team ECR repositories (docs/supply-chain.md). Team namespaces also
# run pods the platform's controllers build, so their upstream images must pass too; the policy pack checks every
# workload the program declares against this list. A `docker.io/<org>/` entry also allows the short `<org>/...`.
DEFAULT_ALLOWED_REGISTRIES = (
    "public.ecr.aws/docker/library/",   # Docker's official images (python, ubuntu, ...) as mirrored on ECR Public
    "nvcr.io/nvidia/",                  # NVIDIA NGC: CUDA, PyTorch, Triton (also KServe's Triton runtime)
    "ghcr.io/mlflow/",                  # the MLflow tracking server (components/mlflow.py)
    "docker.io/kserve/",                # KServe model servers and storage-initializer in InferenceService pods
    "docker.io/pytorch/",               # KServe's TorchServe runtime
    "docker.io/tensorflow/",            # KServe's TensorFlow Serving runtime
    "gcr.io/knative-releases/",         # Knative's queue-proxy sidecar in InferenceService pods
    "quay.io/jupyter/",                 # Jupyter's notebook images
    "quay.io/jupyterhub/",              # zero-to-jupyterhub's single-user helpers
    "docker.io/kubeflow/",              # the Kubeflow training operator (components/training.py)
    "docker.io/mpioperator/",           # the kubectl-delivery init container it puts into MPIJob launchers
)


class SupplyChainConfig(Model):
    allowed_registries: list[RegistryPrefix] = Field(list(DEFAULT_ALLOWED_REGISTRIES), description=(
        "Image prefixes that may run in team namespaces, besides this stack's team ECR repositories; a registry anyone "
        "can publish to must name its namespace."))
    scanning: Literal["basic", "enhanced"] = Field("basic", description=(
        "ECR scanning: basic, or enhanced (Amazon Inspector, continuous, registry-wide)."))
    admission_action: Literal["Deny", "Warn"] = Field("Deny", description=(
        "Deny, or Warn (report violations to the client, admit anyway; refused in prod)."))
    untagged_image_days: Annotated[int, Field(ge=1, le=365)] = Field(7, description=(
        "Untagged images expire after this many days."))
    max_images: Annotated[int, Field(ge=10, le=10000)] = Field(500, description=(
        "Images kept per team repository; the oldest expire first."))
    workflow_repository: GithubRepository | None = Field(None, description=(
        "The repository (owner/name) holding this platform's .github/workflows/team-image.yml: CI roles trust only that"
        " workflow, so every pushed image went through its scan. Required when a team sets ciRepository."))
    github_oidc_provider_arn: Annotated[str, Field(
        pattern=r"^arn:aws[-a-z]*:iam::\d{12}:oidc-provider/token\.actions\.githubusercontent\.com$")] | None = Field(None, description=(
        "The account's existing IAM OIDC provider for token.actions.githubusercontent.com (one per account); unset: "
        "this stack declares it."))


def problems(cfg: PlatformConfig) -> list[Problem]:
    """CI push roles trust only the platform's scanning workflow; prod admission denies."""
    errors: list[Problem] = []
    sc = cfg.supply_chain
    pushers = [f"teams[{i}].ciRepository" for i, t in enumerate(cfg.teams) if t.ci_repository]
    if pushers and sc.workflow_repository is None:
        errors.append(Problem("supplyChain.workflowRepository",
                              f"is required when a team sets ciRepository ({', '.join(pushers)}): name the repository "
                              "holding .github/workflows/team-image.yml (owner/name), so only that scanning workflow "
                              "may push images", None))
    if cfg.is_prod and sc.admission_action != "Deny":
        errors.append(Problem("supplyChain.admissionAction",
                              "must be 'Deny' in prod: with 'Warn' unscanned or unpinned images still run",
                              sc.admission_action))
    return errors
