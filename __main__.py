"""The ML platform: load and validate the stack config, compose the components, export what operators need."""

import pulumi

from components import labels
from components.autoscaler import ClusterAutoscaler, ClusterAutoscalerArgs, ScaledNodeGroup, node_group_resources
from components.cluster import Cluster, ClusterArgs
from components.config import load_config
from components.datasets import Datasets, DatasetsArgs
from components.endpoints import (JUPYTERHUB_API, MLFLOW, NOTEBOOK_INGRESS, NOTEBOOK_SPAWNER, PRIORITY_CLASSES,
                                  PROMETHEUS, PROMETHEUS_API, SERVING_INGRESS)
from components.gpu_operator import GpuOperator, GpuOperatorArgs
from components.karpenter import Karpenter, KarpenterArgs
from components.kueue import Kueue, KueueArgs
from components.mlflow import MLFLOW_IMAGE, Mlflow, MlflowArgs
from components.model_rollout import ModelRollout, ModelRolloutArgs, registry_rollouts
from components.network import Network, NetworkArgs
from components.notebooks import Notebooks, NotebooksArgs
from components.observability import Observability, ObservabilityArgs
from components.planning.gpu_supply import fallback_pool, gpu_pools, training_pool
from components.planning.notebook_profiles import notebook_profiles, team_notebook_group
from components.planning.capacity import namespace_gpu_quota, node_group_labels, team_queues, training_flavors
from components.serving import Serving, ServingArgs
from components.supply_chain import SupplyChain, SupplyChainArgs
from components.tenancy import Team, TeamArgs, Tenancy, TenancyArgs
from components.training import Training, TrainingArgs

config = load_config()
cluster_name = config.cluster.name or f"mlops-{pulumi.get_stack()}"

network = Network("network", NetworkArgs(config=config.network, cluster_name=cluster_name,
                                         log_retention_days=config.cluster.log_retention_days))
cluster = Cluster("cluster", ClusterArgs(
    config=config.cluster,
    cluster_name=cluster_name,
    vpc_id=network.vpc_id,
    private_subnet_ids=network.private_subnet_ids,
    protect_data=config.protect_data,
))

# Prometheus + Grafana: GPU, cost and model dashboards, recording rules and alerts.
observability = Observability("observability", ObservabilityArgs(
    config=config.observability, access=cluster.access, is_prod=config.is_prod, teams=config.teams,
    gpu_pools=gpu_pools(config), gpu_idle_percent=config.gpu.alerts.idle_utilization_percent, scraper=PROMETHEUS,
    team_quota_gpus={t.name: namespace_gpu_quota(config, t)[labels.GPU_RESOURCE] for t in config.teams},
)) if config.observability.enabled else None

# The managed GPU node groups scale (from zero) with the cluster-autoscaler; Karpenter never touches their nodes.
autoscaler = ClusterAutoscaler("cluster-autoscaler", ClusterAutoscalerArgs(
    access=cluster.access, kubernetes_version=config.cluster.kubernetes_version,
    node_groups=[ScaledNodeGroup(
        name=g.name, autoscaling_group=cluster.gpu_autoscaling_groups[g.name], node_labels=node_group_labels(g),
        taints=(dict(labels.GPU_TAINT),), resources=node_group_resources(list(g.instance_types), efa=config.gpu.efa))
        for g in config.cluster.gpu_node_groups],
)) if config.cluster.gpu_node_groups and config.cluster.autoscaler.enabled else None

karpenter = Karpenter("karpenter", KarpenterArgs(access=cluster.access, config=config.karpenter, gpu=config.gpu))
gpu_operator = GpuOperator("gpu-operator", GpuOperatorArgs(
    access=cluster.access, gpu=config.gpu, monitoring=observability.release if observability else None))

mlflow = Mlflow("mlflow", MlflowArgs(
    config=config.mlflow, access=cluster.access, cluster_name=cluster_name, is_prod=config.is_prod,
    protect_data=config.protect_data, sts_cidrs=network.sts_endpoint_cidrs, endpoint=MLFLOW,
    teams=[t.name for t in config.teams],
    rollout_models=sorted({r.registered_model for r in registry_rollouts(config.teams)}),
))

datasets = Datasets("datasets", DatasetsArgs(
    datasets=config.datasets, readers=config.dataset_readers(), access=cluster.access,
    kubernetes_version=config.cluster.kubernetes_version,
    addon_version=config.cluster.addon_versions.get("aws-fsx-csi-driver"),
    protect_data=config.protect_data, is_prod=config.is_prod,
))

tenancy = Tenancy("tenancy", TenancyArgs(
    access=cluster.access, priority_classes=PRIORITY_CLASSES,
    notebook_spawner=NOTEBOOK_SPAWNER if config.notebooks.enabled else None,
))
teams = {t.name: Team(f"team-{t.name}", TeamArgs(
    config=t, access=cluster.access, mlflow=MLFLOW, serving_ingress=SERVING_INGRESS, jupyterhub_api=JUPYTERHUB_API,
    notebook_ingress=NOTEBOOK_INGRESS, s3_cidrs=tenancy.s3_cidrs, sts_cidrs=network.sts_endpoint_cidrs,
    datasets=datasets.access_for(t.name), dvc=datasets.dvc_remote,
    gpu_quota=namespace_gpu_quota(config, t), metrics_scraper=PROMETHEUS if config.observability.enabled else None,
    mlflow_password=mlflow.team_passwords[t.name],
)).access for t in config.teams}

# JupyterHub spawning into the team namespaces; the training operator and each team's job defaults.
notebooks = Notebooks("notebooks", NotebooksArgs(
    config=config.notebooks, profiles=notebook_profiles(config), teams=config.teams, team_access=teams,
    team_groups={t.name: team_notebook_group(config, t) for t in config.teams}, access=cluster.access,
    cpu_pools=[p.name for p in config.karpenter.cpu_node_pools], api=JUPYTERHUB_API, ingress=NOTEBOOK_INGRESS,
    priority_class=PRIORITY_CLASSES.notebook, prometheus=PROMETHEUS_API if observability else None,
    monitoring=observability.release if observability else None,
)) if config.notebooks.enabled else None
training = Training("training", TrainingArgs(
    config=config.training, access=cluster.access, pool=training_pool(config), team_access=list(teams.values()),
    priority_class=PRIORITY_CLASSES.training, monitoring=observability.release if observability else None,
    fallback_pool=fallback_pool(config), checkpoint_bucket=datasets.dvc_bucket_name,
)) if config.training.enabled else None

# Kueue: training jobs admitted whole against per-team GPU quotas, idle GPUs shared in one cohort.
kueue = Kueue("kueue", KueueArgs(
    access=cluster.access, flavors=training_flavors(config), queues=team_queues(config),
    team_namespaces={name: access.namespace_resource for name, access in teams.items()},
    replicas=2 if config.is_prod else 1,
)) if config.training.enabled and training_flavors(config) else None

serving = Serving("serving", ServingArgs(
    access=cluster.access, is_prod=config.is_prod, teams=config.teams, team_access=list(teams.values()),
    ingress=SERVING_INGRESS, priority_class=PRIORITY_CLASSES.inference,
))

# Registry-mode models: an MLflow alias starts a canary the rollout service analyses, then promotes or rolls back.
rollouts = registry_rollouts(config.teams)
model_rollout = ModelRollout("model-rollout", ModelRolloutArgs(
    access=cluster.access, rollouts=rollouts, mlflow=MLFLOW, prometheus=PROMETHEUS_API, image=MLFLOW_IMAGE,
    mlflow_namespace=mlflow.namespace_resource, monitoring=observability.release if observability else None,
)) if rollouts else None

# Team image repositories, CI push roles and the image admission policy (selects team namespaces by label).
supply_chain = SupplyChain("supply-chain", SupplyChainArgs(
    config=config.supply_chain, teams=config.teams, cluster_name=cluster_name, access=cluster.access,
    protect_data=config.protect_data,
))

pulumi.export("clusterName", cluster.cluster_name)
pulumi.export("vpcId", network.vpc_id)
pulumi.export("stsEndpointAddresses", network.sts_endpoint_cidrs)
pulumi.export("oidcProviderArn", cluster.oidc_provider_arn)
pulumi.export("kubeconfig", pulumi.Output.secret(cluster.kubeconfig))
pulumi.export("mlflowTrackingUri", mlflow.tracking_url)
pulumi.export("mlflowArtifactBucket", mlflow.artifact_bucket_name)
pulumi.export("modelUrls", serving.model_urls)
pulumi.export("teamNamespaces", sorted(t.namespace for t in teams.values()))
pulumi.export("dvcBucket", datasets.dvc_bucket_name)
pulumi.export("datasetFileSystems", datasets.file_system_ids)
pulumi.export("imageRepositories", supply_chain.repository_urls)
pulumi.export("imageCiRoles", supply_chain.ci_role_arns)
pulumi.export("grafanaUrl", observability.grafana_url if observability else None)
