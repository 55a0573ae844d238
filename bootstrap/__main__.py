"""The bootstrap: the state bucket and secrets key, the GitHub OIDC provider and the CI roles (docs/first-deploy.md)."""

import sys
from pathlib import Path

# The bootstrap is a package of this repository and shares its code (config types, the supply chain's GitHub
# constants); Pulumi runs this file with bootstrap/ as the working directory.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pulumi  # noqa: E402

from bootstrap.ci import GithubCi, GithubCiArgs  # noqa: E402
from bootstrap.config import load_config  # noqa: E402
from bootstrap.quotas import GpuQuotas, GpuQuotasArgs, platform_needs  # noqa: E402
from bootstrap.state import StateBackend, StateBackendArgs  # noqa: E402

config = load_config()
region = pulumi.Config("aws").require("region")
quota_needs = platform_needs(config.gpu_quotas.platform_stacks, region)   # config errors before any resource

state = StateBackend("state", StateBackendArgs(config=config.state, region=region))
ci = GithubCi("github-ci", GithubCiArgs(config=config.github, state_bucket_arn=state.bucket_arn,
                                        secrets_key_arn=state.secrets_key_arn))

quotas = GpuQuotas("gpu-quotas", GpuQuotasArgs(needs=quota_needs))

pulumi.export("stateBackendUrl", state.backend_url)
pulumi.export("secretsProvider", state.secrets_provider)
pulumi.export("stateBucket", state.bucket_name)
pulumi.export("secretsKeyArn", state.secrets_key_arn)
pulumi.export("githubOidcProviderArn", ci.oidc_provider_arn)
pulumi.export("previewRoleArn", ci.preview_role_arn)
pulumi.export("deployRoleArn", ci.deploy_role_arn)
pulumi.export("gpuQuotaRequests", quotas.requested)
# Repository variables the workflows read (Settings > Secrets and variables > Actions > Variables).
pulumi.export("githubVariables", {
    "AWS_PREVIEW_ROLE_ARN": ci.preview_role_arn,
    "AWS_DEPLOY_ROLE_ARN": ci.deploy_role_arn,
    "AWS_REGION": region,
    "PULUMI_STATE_BUCKET": state.bucket_name,
    "PULUMI_STATE_REGION": region,
})
# What the platform stacks take from here (pulumi config set --path ...).
pulumi.export("platformConfig", {
    "cluster.ciRoles.preview": ci.preview_role_arn,
    "cluster.ciRoles.deploy": ci.deploy_role_arn,
    "supplyChain.githubOidcProviderArn": ci.oidc_provider_arn,
})
