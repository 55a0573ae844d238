"""The ML platform: load and validate the stack config, compose the components, export what operators need."""

import pulumi

from components.cluster import Cluster, ClusterArgs
from components.config import load_config
from components.network import Network, NetworkArgs

config = load_config()
cluster_name = config.cluster.name or f"mlops-{pulumi.get_stack()}"

network = Network("network", NetworkArgs(config=config.network, cluster_name=cluster_name))
cluster = Cluster("cluster", ClusterArgs(
    config=config.cluster,
    cluster_name=cluster_name,
    vpc_id=network.vpc_id,
    private_subnet_ids=network.private_subnet_ids,
    protect_data=config.protect_data,
))

pulumi.export("clusterName", cluster.cluster_name)
pulumi.export("vpcId", network.vpc_id)
pulumi.export("oidcProviderArn", cluster.oidc_provider_arn)
pulumi.export("kubeconfig", pulumi.Output.secret(cluster.kubeconfig))
