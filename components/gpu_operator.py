"""The NVIDIA GPU operator: device plugin with per-pool sharing configs, MIG manager, DCGM exporter, waste alerts.

On the EKS-optimized NVIDIA AMIs (AL2023, Bottlerocket) the driver and the container toolkit are on the node
already: their pools' nodes carry `nvidia.com/gpu.deploy.driver=false` (and `...container-toolkit=false`), and
the operator's driver and toolkit are only enabled at all when some pool runs an AMI without them.

Each GPU NodePool selects its device-plugin config by the node label `nvidia.com/device-plugin.config` (a key
of one ConfigMap: whole GPUs, time-slicing with the pool's replicas, or MIG) and, for MIG, its mig-parted
layout by `nvidia.com/mig.config`. Formats: NVIDIA k8s-device-plugin v0.20.0 config `version: v1`, and
mig-parted v0.15.0 config `version: v1` (the versions the pinned gpu-operator, components/data/versions.yaml, deploys).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
import yaml

from components import catalog, labels
from components.config import GpuConfig, GpuNodePoolConfig
from components.endpoints import ClusterAccess
from components.observability.rules import gpu_waste_alert_rules

GPU_OPERATOR_VERSION = catalog.chart("gpu-operator")["version"]        # components/data/versions.yaml
GPU_OPERATOR_REPO = catalog.chart("gpu-operator")["repo"]
NAMESPACE = "gpu-operator"
DEVICE_PLUGIN_CONFIGMAP = "mlops-device-plugin-config"
MIG_PARTED_CONFIGMAP = "mlops-mig-parted-config"
DEFAULT_DEVICE_PLUGIN_CONFIG = "default"     # nodes without the label (e.g. the managed GPU node groups)
MIG_DISABLED = "all-disabled"
# The DCGM exporter Service the operator creates (state-dcgm-exporter): its label and metrics port name.
DCGM_EXPORTER_SELECTOR = {"app": "nvidia-dcgm-exporter"}
DCGM_EXPORTER_PORT = "gpu-metrics"


@dataclass(frozen=True)
class GpuOperatorArgs:
    access: ClusterAccess
    gpu: GpuConfig
    # The release that installs the Prometheus operator's CRDs (Observability.release); without one, no
    # ServiceMonitor or PrometheusRule is declared (nothing could accept them).
    monitoring: pulumi.Resource | None = None


class GpuOperator(pulumi.ComponentResource):
    namespace: pulumi.Output[str]
    device_plugin_configs: list[str]
    mig_configs: list[str]
    alert_names: list[str]
    release: k8s.helm.v3.Release

    def __init__(self, name: str, args: GpuOperatorArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:gpu_operator:GpuOperator", name, None, opts)
        access, gpu = args.access, args.gpu
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=access.provider, depends_on=access.depends_on)

        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=NAMESPACE, labels={
                # The operator's DaemonSets are privileged (driver, toolkit, device plugin, DCGM).
                "pod-security.kubernetes.io/enforce": "privileged"}),
            opts=k8s_opts)
        in_namespace = pulumi.ResourceOptions(parent=self, provider=access.provider, depends_on=[namespace])

        plugin_configs = device_plugin_configs(gpu)
        plugin_cm = k8s.core.v1.ConfigMap(
            f"{name}-device-plugin-config",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=DEVICE_PLUGIN_CONFIGMAP, namespace=NAMESPACE),
            data={key: yaml.safe_dump(value, sort_keys=False) for key, value in plugin_configs.items()},
            opts=in_namespace)
        configmaps: list[pulumi.Resource] = [plugin_cm]
        mig = mig_parted_config(gpu)
        if mig is not None:
            configmaps.append(k8s.core.v1.ConfigMap(
                f"{name}-mig-parted-config",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=MIG_PARTED_CONFIGMAP, namespace=NAMESPACE),
                data={"config.yaml": yaml.safe_dump(mig, sort_keys=False)},
                opts=in_namespace))

        self.release = k8s.helm.v3.Release(
            f"{name}-release",
            name="gpu-operator",
            chart="gpu-operator",
            version=GPU_OPERATOR_VERSION,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=GPU_OPERATOR_REPO),
            namespace=NAMESPACE,
            values=helm_values(gpu),
            opts=pulumi.ResourceOptions(parent=self, provider=access.provider, depends_on=[namespace, *configmaps]),
        )

        # Scraped by the Prometheus operator: declared after the release that installs its CRDs.
        rules = gpu_waste_alert_rules(gpu.alerts, NAMESPACE) if args.monitoring is not None else []
        if args.monitoring is not None:
            after_crds = pulumi.ResourceOptions(parent=self, provider=access.provider,
                                                depends_on=[self.release, args.monitoring])
            k8s.apiextensions.CustomResource(
                f"{name}-dcgm-exporter", api_version="monitoring.coreos.com/v1", kind="ServiceMonitor",
                metadata=k8s.meta.v1.ObjectMetaArgs(name="nvidia-dcgm-exporter", namespace=NAMESPACE),
                spec=service_monitor_spec(), opts=after_crds)
            k8s.apiextensions.CustomResource(
                f"{name}-gpu-waste", api_version="monitoring.coreos.com/v1", kind="PrometheusRule",
                metadata=k8s.meta.v1.ObjectMetaArgs(name="gpu-waste", namespace=NAMESPACE),
                spec={"groups": [{"name": "gpu-waste", "rules": rules}]}, opts=after_crds)

        self.namespace = namespace.metadata.name
        self.device_plugin_configs = list(plugin_configs)
        self.mig_configs = list((mig or {}).get("mig-configs", {}))
        self.alert_names = [r["alert"] for r in rules]
        self.register_outputs({
            "namespace": self.namespace,
            "device_plugin_configs": self.device_plugin_configs,
            "mig_configs": self.mig_configs,
            "alert_names": self.alert_names,
        })


# ---------------------------------------------------------------------------------------------------
# Pure builders


def mig_config_name(pool: GpuNodePoolConfig) -> str:
    return pool.name


def gpu_node_labels(pool: GpuNodePoolConfig, driver_preinstalled: bool = True,
                    bottlerocket: bool = False) -> dict[str, str]:
    """Labels of a GPU NodePool's nodes: pool, GPU type, sharing, and the NVIDIA configs they select."""
    node_labels = {
        labels.NODE_POOL: pool.name,
        labels.GPU_TYPE: pool.gpu_type,
        labels.GPU_SHARING: pool.sharing.mode,
        labels.DEVICE_PLUGIN_CONFIG: pool.name,
    }
    if pool.sharing.mode == "mig":
        node_labels[labels.MIG_CONFIG] = mig_config_name(pool)
    elif catalog.mig_model(pool.gpu_type) is not None:
        node_labels[labels.MIG_CONFIG] = MIG_DISABLED      # a MIG-capable GPU left whole
    if driver_preinstalled:
        node_labels[labels.DEPLOY_DRIVER] = "false"
        node_labels[labels.DEPLOY_TOOLKIT] = "false"
    if bottlerocket:       # Bottlerocket's own device plugin serves the GPUs (whole GPUs only, see config rules)
        node_labels[labels.DEPLOY_DEVICE_PLUGIN] = "false"
    return node_labels


def device_plugin_configs(gpu: GpuConfig) -> dict[str, dict]:
    """Named device-plugin configs: `default` (whole GPUs) and one per GPU NodePool."""
    def config(sharing: dict | None = None) -> dict:
        doc: dict = {"version": "v1", "flags": {"migStrategy": gpu.mig_strategy}}
        if sharing:
            doc["sharing"] = sharing
        return doc

    configs = {DEFAULT_DEVICE_PLUGIN_CONFIG: config()}
    for pool in gpu.node_pools:
        s = pool.sharing
        if s.mode == "time-slicing":
            configs[pool.name] = config({"timeSlicing": {
                "renameByDefault": s.rename_by_default,
                "failRequestsGreaterThanOne": s.fail_requests_greater_than_one,
                "resources": [{"name": labels.GPU_RESOURCE, "replicas": s.replicas}],
            }})
        else:
            configs[pool.name] = config()
    return configs


def mig_parted_config(gpu: GpuConfig) -> dict | None:
    """The mig-parted config with `all-disabled` and every MIG pool's layout; None when no pool uses MIG."""
    layouts = {mig_config_name(p): [{"devices": "all", "mig-enabled": True, "mig-devices": dict(p.sharing.mig_layout)}]
               for p in gpu.node_pools if p.sharing.mode == "mig"}
    if not layouts:
        return None
    return {"version": "v1", "mig-configs": {MIG_DISABLED: [{"devices": "all", "mig-enabled": False}], **layouts}}


def helm_values(gpu: GpuConfig) -> dict:
    system = {"kubernetes.io/os": "linux", labels.NODE_ROLE: "system"}
    needs_driver = any(p.ami is not None and p.ami.nvidia_driver == "operator" for p in gpu.node_pools)
    mig_manager: dict = {"enabled": True, "config": {"create": False, "default": MIG_DISABLED}}
    if mig_parted_config(gpu) is not None:
        mig_manager["config"]["name"] = MIG_PARTED_CONFIGMAP
    return {
        "operator": {"nodeSelector": system},
        "node-feature-discovery": {"master": {"nodeSelector": system}, "gc": {"nodeSelector": system}},
        # EKS NVIDIA AMIs ship both; nodes of such pools also carry nvidia.com/gpu.deploy.driver=false.
        "driver": {"enabled": needs_driver},
        "toolkit": {"enabled": needs_driver},
        "mig": {"strategy": gpu.mig_strategy},
        "devicePlugin": {"config": {"create": False, "name": DEVICE_PLUGIN_CONFIGMAP,
                                    "default": DEFAULT_DEVICE_PLUGIN_CONFIG}},
        "migManager": mig_manager,
        # Our ServiceMonitor below (with honorLabels) replaces the chart's.
        "dcgmExporter": {"enabled": True, "serviceMonitor": {"enabled": False}},
    }


def service_monitor_spec() -> dict:
    return {
        "selector": {"matchLabels": dict(DCGM_EXPORTER_SELECTOR)},
        "namespaceSelector": {"matchNames": [NAMESPACE]},
        # honorLabels keeps the exporter's `namespace`/`pod`/`container` labels (the pod holding the GPU)
        # instead of renaming them `exported_*` in favour of the exporter pod's own.
        "endpoints": [{"port": DCGM_EXPORTER_PORT, "path": "/metrics", "interval": "15s", "honorLabels": True}],
    }
