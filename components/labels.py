"""Label, taint and tag keys shared by components, NetworkPolicies and policies."""

PREFIX = "mlops.platform"

GPU_TYPE = f"{PREFIX}/gpu-type"              # value: a gpuTypes key of components/data/gpus.yaml
NODE_POOL = f"{PREFIX}/node-pool"            # value: the node group / NodePool name
NODE_ROLE = f"{PREFIX}/node-role"            # "system" on the system node group
TEAM = f"{PREFIX}/team"                      # on team namespaces and their workloads
JOB_TYPE = "job-type"                        # "training" | "notebook" | "inference": egress rules key on it

GPU_RESOURCE = "nvidia.com/gpu"
GPU_TAINT = {"key": GPU_RESOURCE, "value": "true", "effect": "NoSchedule"}
# EKS managed node groups spell taint effects in their own enum.
EKS_TAINT_EFFECT = {"NoSchedule": "NO_SCHEDULE", "NoExecute": "NO_EXECUTE", "PreferNoSchedule": "PREFER_NO_SCHEDULE"}

DISCOVERY_TAG = "karpenter.sh/discovery"     # subnets and security groups Karpenter may use
