"""Label, taint and tag keys shared by components, NetworkPolicies and policies."""

PREFIX = "mlops.platform"

GPU_TYPE = f"{PREFIX}/gpu-type"              # value: a gpuTypes key of components/data/gpus.yaml
NODE_POOL = f"{PREFIX}/node-pool"            # value: the node group / NodePool name
NODE_ROLE = f"{PREFIX}/node-role"            # "system" on the system node group
TEAM = f"{PREFIX}/team"                      # on team namespaces and their workloads
JOB_TYPE = "job-type"                        # "training" | "notebook" | "inference": egress rules key on it
# On a training job's pods: the MLflow run the job logs to (its pods get it as MLFLOW_RUN_ID); the cost rules and the
# training dashboard join a job's GPU-hours and cost to that run (docs/observability.md).
MLFLOW_RUN_ID = f"{PREFIX}/mlflow-run-id"
NOTEBOOK_USER = "hub.jupyter.org/username"   # KubeSpawner's pod annotation: the JupyterHub user, unescaped

GPU_RESOURCE = "nvidia.com/gpu"
GPU_TAINT = {"key": GPU_RESOURCE, "value": "true", "effect": "NoSchedule"}
# EKS managed node groups spell taint effects in their own enum.
EKS_TAINT_EFFECT = {"NoSchedule": "NO_SCHEDULE", "NoExecute": "NO_EXECUTE", "PreferNoSchedule": "PREFER_NO_SCHEDULE"}

DISCOVERY_TAG = "karpenter.sh/discovery"     # subnets and security groups Karpenter may use

# GPU capacity (components/karpenter.py, components/gpu_operator.py)
GPU_SHARING = f"{PREFIX}/gpu-sharing"        # "none" | "time-slicing" | "mig" on GPU NodePool nodes
MAX_GPUS = f"{PREFIX}/max-gpus"              # NodePool annotation: physical GPUs at the pool's limit
GPU_SHARED_RESOURCE = f"{GPU_RESOURCE}.shared"   # time-sliced replicas with renameByDefault
MIG_RESOURCE_PREFIX = "nvidia.com/mig-"      # + profile, e.g. nvidia.com/mig-1g.10gb (MIG strategy mixed)
DEVICE_PLUGIN_CONFIG = "nvidia.com/device-plugin.config"   # node label: key of the device-plugin ConfigMap
MIG_CONFIG = "nvidia.com/mig.config"         # node label: mig-parted config applied by mig-manager
DEPLOY_DRIVER = "nvidia.com/gpu.deploy.driver"             # "false": the AMI ships the NVIDIA driver
DEPLOY_TOOLKIT = "nvidia.com/gpu.deploy.container-toolkit"
DEPLOY_DEVICE_PLUGIN = "nvidia.com/gpu.deploy.device-plugin"   # "false" on Bottlerocket (its own plugin)
KARPENTER_NODEPOOL = "karpenter.sh/nodepool"
CAPACITY_TYPE = "karpenter.sh/capacity-type"
DO_NOT_DISRUPT = "karpenter.sh/do-not-disrupt"   # pod annotation "true": Karpenter does not voluntarily evict it

# Supply chain (components/supply_chain.py, policies/images.py)
IMAGE_ALLOWLIST = f"{PREFIX}/image-allowlist"   # annotation on the image admission policy: its allowlist as JSON

# On a team namespace: the team's monthly GPU budget in USD (TeamConfig.monthlyGpuBudgetUsd), read by the policy pack.
GPU_BUDGET_ANNOTATION = f"{PREFIX}/monthly-gpu-budget-usd"
