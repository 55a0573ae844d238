"""Team tenancy: what each team's namespace holds, and where its pods can connect, computed from the rendered
NetworkPolicies with the evaluator in policies/netpol.py."""

from __future__ import annotations

import copy
import json

import pytest

from components import labels
from components.config import parse_config
from components.endpoints import (JUPYTERHUB_API, MLFLOW, NOTEBOOK_INGRESS, PRIORITY_CLASSES, PROMETHEUS,
                                  SERVING_INGRESS)
from policies import netpol
from policies.netpol import EGRESS, INGRESS, Peer, Port, Reach
from preview.aws_mocks import S3_PREFIX_LISTS
from tests.conftest import (Rendered, assert_config_problem, run_config,
                            stack_yaml, raw_config as raw, config_problems as problems)

PREFIX = "mlops-platform:"
POD_KINDS = {
    "training": {labels.JOB_TYPE: "training", "training.kubeflow.org/job-name": "resnet"},
    "notebook": {labels.JOB_TYPE: "notebook", "component": "singleuser-server"},
    "inference": {labels.JOB_TYPE: "inference", "serving.kserve.io/inferenceservice": "fraud-model"},
    "unlabelled": {"app": "debug"},
}
DNS = frozenset(Reach(Peer.pods_in("kube-system", {"k8s-app": "kube-dns"}), Port(p, 53)) for p in ("UDP", "TCP"))
MLFLOW_REACH = Reach(Peer.pods_in(MLFLOW.namespace, MLFLOW.pod_labels), Port("TCP", MLFLOW.port))
HUB_REACH = Reach(Peer.pods_in(JUPYTERHUB_API.namespace, JUPYTERHUB_API.pod_labels), Port("TCP", JUPYTERHUB_API.port))
LUSTRE = (Port("TCP", 988), Port("TCP", 1018, 1023))


# ---- helpers -------------------------------------------------------------------------------------------


def teams_of(config: dict) -> list[dict]:
    return config[PREFIX + "teams"]


def policies(rendered: Rendered) -> list[dict]:
    return rendered.objects("NetworkPolicy")


def reach(network_policies: list[dict], namespace: str, kind: str, direction: str = EGRESS) -> frozenset[Reach]:
    return netpol.allowed(network_policies, namespace, {labels.TEAM: namespace, **POD_KINDS[kind]}, direction)


def s3(region: str) -> frozenset[Reach]:
    return frozenset(Reach(Peer.ip_block(c), Port("TCP", 443)) for c in S3_PREFIX_LISTS[region][1])


def sts(rendered: Rendered) -> frozenset[Reach]:
    """The STS interface endpoint's addresses (a stack output), where IRSA gets credentials."""
    return frozenset(Reach(Peer.ip_block(c), Port("TCP", 443)) for c in rendered.run.outputs["stsEndpointAddresses"])


def team_fsx(rendered: Rendered, config: dict, team: str) -> frozenset[Reach]:
    """The Lustre ports of the subnets holding the file systems of the datasets `team` may read (from config)."""
    subnets = {r.name: r.inputs["cidrBlock"] for r in rendered.of_type("aws:ec2/subnet:Subnet")}
    team_cfg = next(t for t in teams_of(config) if t["name"] == team)
    readable = [d for d in config.get(PREFIX + "datasets", [])
                if team in d.get("teams", []) or d["name"] in team_cfg.get("datasets", [])]
    cidrs = {subnets[f"network-private-{d.get('subnetIndex', 0)}"] for d in readable}
    return frozenset(Reach(Peer.ip_block(c), port) for c in cidrs for port in LUSTRE)


def expected_training(rendered: Rendered, config: dict, team: str) -> frozenset[Reach]:
    peers = Reach(Peer.pods_in(team, {labels.JOB_TYPE: "training"}))   # the team's own workers, any port
    return DNS | {MLFLOW_REACH, peers} | s3(config["aws:region"]) | sts(rendered) | team_fsx(rendered, config, team)


def isolation_problems(network_policies: list[dict], namespace: str, region: str) -> list[str]:
    """What breaks a tenant: no default deny, a pod kind not isolated in either direction, or training egress past
    the allowlist."""
    problems = [f"no default deny of {direction}" for direction in (INGRESS, EGRESS)
                if not any(netpol.default_deny(p, direction) for p in network_policies
                           if netpol.namespace_of(p) == namespace)]
    problems += [f"{kind} pods are not isolated for {direction}" for kind in POD_KINDS for direction in (INGRESS, EGRESS)
                if not netpol.isolated(network_policies, namespace, {labels.TEAM: namespace, **POD_KINDS[kind]},
                                       direction)]
    allowlist = ["10.0.0.0/8", *S3_PREFIX_LISTS[region][1]]
    problems += [f"training pods reach {r}" for r in netpol.outside_allowlist(
        reach(network_policies, namespace, "training"), allowlist)]
    return problems


# ---- the key property: where a training pod can connect ------------------------------------------------


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_training_pods_reach_exactly_dns_mlflow_s3_sts_and_their_teams_fsx(stack, request):
    rendered, config = request.getfixturevalue(stack), stack_yaml(stack)
    for team in teams_of(config):
        got = reach(policies(rendered), team["name"], "training")
        assert got == expected_training(rendered, config, team["name"]), \
            f"{stack}/{team['name']}: extra {sorted(map(str, got - expected_training(rendered, config, team['name'])))}"
        assert not any(netpol.open_to_internet(r) for r in got)


def test_training_pods_reach_only_their_own_teams_file_systems(prod):
    config = stack_yaml("prod")
    fraud, recs = team_fsx(prod, config, "risk-lab"), team_fsx(prod, config, "reco-lab")
    assert fraud and recs and fraud.isdisjoint(recs)
    assert reach(policies(prod), "risk-lab", "training") & recs == frozenset()
    assert reach(policies(prod), "reco-lab", "training") & fraud == frozenset()


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_team_namespace_is_isolated(stack, request):
    rendered, config = request.getfixturevalue(stack), stack_yaml(stack)
    for team in teams_of(config):
        assert isolation_problems(policies(rendered), team["name"], config["aws:region"]) == []


def test_a_namespace_without_default_deny_fails_the_isolation_check(dev):
    without = [p for p in policies(dev) if not (p["metadata"]["name"] == "default-deny"
                                                and p["metadata"]["namespace"] == "risk-lab")]
    problems = isolation_problems(without, "risk-lab", "us-west-2")
    assert problems == ["no default deny of Ingress", "no default deny of Egress",
                        "unlabelled pods are not isolated for Ingress"]
    assert reach(without, "risk-lab", "unlabelled", INGRESS) == netpol.EVERYTHING
    assert isolation_problems(without, "reco-lab", "us-west-2") == []


@pytest.mark.parametrize("peer", [{"ipBlock": {"cidr": "0.0.0.0/0"}}, {"ipBlock": {"cidr": "::/0"}},
                                  {"ipBlock": {"cidr": "198.51.100.7/32"}}, None])
def test_a_training_egress_rule_to_the_internet_fails_the_isolation_check(dev, peer):
    mutated = copy.deepcopy(policies(dev))
    training = next(p for p in mutated if p["metadata"]["name"] == "training-egress"
                    and p["metadata"]["namespace"] == "risk-lab")
    training["spec"]["egress"].append({"to": [peer]} if peer else {"ports": [{"protocol": "TCP", "port": 443}]})
    problems = isolation_problems(mutated, "risk-lab", "us-west-2")
    assert len(problems) == 1 and problems[0].startswith("training pods reach ")
    assert reach(mutated, "risk-lab", "training") != expected_training(dev, stack_yaml("dev"), "risk-lab")


# ---- the other pods ------------------------------------------------------------------------------------


def test_notebooks_reach_the_training_destinations_plus_the_hub_and_their_package_index():
    config = stack_yaml("dev")
    teams_of(config)[1]["packageIndex"] = {"cidrs": ["151.101.0.0/22", "151.101.64.0/22"]}
    teams_of(config)[0]["packageIndex"] = {"proxy": {"namespace": "egress-proxy", "podLabels": {"app": "squid"},
                                                     "port": 3128}}
    rendered = Rendered(run_config(config))
    data = DNS | {MLFLOW_REACH, HUB_REACH} | s3("us-west-2") | sts(rendered)
    recs = reach(policies(rendered), "reco-lab", "notebook")
    assert recs == data | {Reach(Peer.ip_block(c), Port("TCP", 443)) for c in ("151.101.0.0/22", "151.101.64.0/22")}
    fraud = reach(policies(rendered), "risk-lab", "notebook")
    proxy = Reach(Peer.pods_in("egress-proxy", {"app": "squid"}), Port("TCP", 3128))
    assert fraud == data | {proxy} | team_fsx(rendered, config, "risk-lab")


def test_without_a_package_index_notebooks_reach_no_internet_address(dev):
    for team in teams_of(stack_yaml("dev")):
        got = reach(policies(dev), team["name"], "notebook")
        assert netpol.outside_allowlist(got, ["10.0.0.0/8", *S3_PREFIX_LISTS["us-west-2"][1]]) == []


def test_notebooks_accept_connections_from_the_hub_and_proxy_only(dev):
    got = reach(policies(dev), "risk-lab", "notebook", INGRESS)
    assert got == {Reach(Peer.pods_in(s.namespace, s.pod_labels)) for s in NOTEBOOK_INGRESS}


def test_inference_pods_accept_the_serving_gateway_only_and_reach_s3_sts_and_dns(dev):
    # Besides the gateway, Prometheus (components/observability.py) may scrape the queue-proxy's request metrics, on
    # that port only: the latency and error-rate alerts and the models dashboard read them.
    scrape = {Reach(Peer.pods_in(PROMETHEUS.source.namespace, PROMETHEUS.source.pod_labels), Port("TCP", port))
              for port in PROMETHEUS.inference_ports}
    assert reach(policies(dev), "risk-lab", "inference", INGRESS) == \
        {Reach(Peer.pods_in(s.namespace, s.pod_labels)) for s in SERVING_INGRESS} | scrape
    assert reach(policies(dev), "risk-lab", "inference") == DNS | s3("us-west-2") | sts(dev)


def test_prometheus_reaches_no_team_pod_but_the_inference_metrics_port(dev):
    prometheus = Peer.pods_in(PROMETHEUS.source.namespace, PROMETHEUS.source.pod_labels)
    for kind in POD_KINDS:
        from_prometheus = {r for r in reach(policies(dev), "risk-lab", kind, INGRESS) if r.peer == prometheus}
        assert from_prometheus == ({Reach(prometheus, Port("TCP", 9091))} if kind == "inference" else set()), kind


def test_unlabelled_pods_reach_dns_only_and_accept_nothing(dev):
    assert reach(policies(dev), "risk-lab", "unlabelled") == DNS
    assert reach(policies(dev), "risk-lab", "unlabelled", INGRESS) == frozenset()


def test_training_workers_of_one_team_accept_each_other_but_not_other_teams(dev):
    got = reach(policies(dev), "risk-lab", "training", INGRESS)
    assert got == {Reach(Peer.pods_in("risk-lab", {labels.JOB_TYPE: "training"}))}


def test_s3_cidrs_come_from_the_regions_managed_prefix_list(prod):
    assert reach(policies(prod), "forecast-lab", "training") >= s3("us-east-1")
    assert not reach(policies(prod), "forecast-lab", "training") & s3("us-west-2")


# ---- what the namespace holds --------------------------------------------------------------------------


def test_namespaces_carry_the_team_label_and_pod_security_baseline(prod):
    for team in teams_of(stack_yaml("prod")):
        ns_labels = prod.obj("Namespace", team["name"])["metadata"]["labels"]
        assert ns_labels[labels.TEAM] == team["name"]
        assert ns_labels["pod-security.kubernetes.io/enforce"] in ("baseline", "restricted")


def test_quota_counts_gpus_cpu_memory_and_storage_from_config(dev):
    hard = dev.obj("ResourceQuota", "team-quota", "risk-lab")["spec"]["hard"]
    # gpuQuota plus what the team's Kueue queue may borrow (components/planning/capacity.py, docs/capacity.md)
    queue = dev.obj("ClusterQueue", "risk-lab")["spec"]["resourceGroups"][0]["flavors"][0]["resources"]
    gpu = next(r for r in queue if r["name"] == "nvidia.com/gpu")
    assert gpu["nominalQuota"] == 4 and hard["requests.nvidia.com/gpu"] == str(4 + gpu["borrowingLimit"])
    assert hard["requests.cpu"] == "64" and hard["requests.memory"] == "256Gi"
    assert hard["requests.storage"] == f"{1000 + 1200}Gi"   # the team's volumes plus its 1200 GiB dataset claim
    assert hard["services.loadbalancers"] == "0" and hard["services.nodeports"] == "0"
    assert dev.obj("ResourceQuota", "team-quota", "reco-lab")["spec"]["hard"]["requests.storage"] == "1000Gi"
    limits = dev.obj("LimitRange", "team-defaults", "risk-lab")["spec"]["limits"][0]
    assert limits["type"] == "Container" and limits["defaultRequest"]["cpu"] and limits["defaultRequest"]["memory"]


def mig_pool(profile: str = "1g.5gb", instances: int = 7) -> dict:
    return {"name": "a100-mig", "instanceTypes": ["p4d.24xlarge"], "capacityTypes": ["on-demand"], "gpuLimit": 8,
            "sharing": {"mode": "mig", "migLayout": {profile: instances}}}


def test_every_offered_gpu_resource_gets_a_quota_line_from_config_or_from_gpu_quota():
    config = stack_yaml("dev")
    config[PREFIX + "gpu"] = {"nodePools": [mig_pool(), {
        "name": "t4-shared", "instanceTypes": ["g4dn.xlarge"], "capacityTypes": ["spot"], "gpuLimit": 2,
        "sharing": {"mode": "time-slicing", "replicas": 4}}]}
    teams_of(config)[0].update(migQuota={"1g.5gb": 20}, sharedGpuQuota=3)
    rendered = Rendered(run_config(config))
    fraud = rendered.obj("ResourceQuota", "team-quota", "risk-lab")["spec"]["hard"]
    assert fraud["requests.nvidia.com/mig-1g.5gb"] == "20" and fraud["requests.nvidia.com/gpu.shared"] == "3"
    # Unset: gpuQuota (2) whole GPUs' worth, capped by the supply (2 GPUs x 4 replicas = 8).
    recs = rendered.obj("ResourceQuota", "team-quota", "reco-lab")["spec"]["hard"]
    assert recs["requests.nvidia.com/mig-1g.5gb"] == str(2 * 7) and recs["requests.nvidia.com/gpu.shared"] == "8"


def test_dataset_claims_are_read_only_and_bound_to_the_datasets_volume(dev):
    claim = dev.obj("PersistentVolumeClaim", "dataset-transactions", "risk-lab")
    assert claim["spec"]["accessModes"] == ["ReadOnlyMany"]
    assert claim["spec"]["storageClassName"] == ""
    volume = dev.obj("PersistentVolume", claim["spec"]["volumeName"])
    assert volume["spec"]["claimRef"]["namespace"] == "risk-lab"
    assert dev.objects("PersistentVolumeClaim", "reco-lab") == []


def irsa_subject(rendered: Rendered, role_arn: str) -> str:
    """The service account a role (by ARN; the mock names roles `<resource name>-<7 hex>`) trusts."""
    role = rendered.one("aws:iam/role:Role", role_arn.split("/")[-1].rsplit("-", 1)[0])
    statement = json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]
    return next(v for k, v in statement["Condition"]["StringEquals"].items() if k.endswith(":sub"))


def test_service_accounts_use_irsa_roles_trusting_only_themselves(dev):
    for account in ("notebook", "training", "serving"):
        sa = dev.obj("ServiceAccount", account, "risk-lab")
        assert sa["automountServiceAccountToken"] is False
        subject = irsa_subject(dev, sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"])
        assert subject == f"system:serviceaccount:risk-lab:{account}"


def role_policy(rendered: Rendered, role_name: str) -> dict:
    found = [r for r in rendered.of_type("aws:iam/rolePolicy:RolePolicy") if r.name == f"{role_name}-inline"]
    return json.loads(found[0].inputs["policy"]) if found else {"Statement": []}


def resources_of(policy: dict) -> set[str]:
    return {res for s in policy["Statement"]
            for res in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])}


def test_team_roles_read_only_the_teams_datasets_dvc_prefix_and_models(prod):
    dvc = next(r.inputs.get("bucket") or r.name for r in prod.of_type("aws:s3/bucket:Bucket") if "dvc" in r.name)
    for team, other in (("risk-lab", "reco-lab"), ("reco-lab", "risk-lab")):
        for account in ("notebook", "training"):
            policy = role_policy(prod, f"team-{team}-{account}")
            objects = {r for r in resources_of(policy) if r.startswith("arn:aws:s3:::") and "/" in r}
            assert any(r.startswith(f"arn:aws:s3:::{dvc}") and r.endswith(f"/{team}/*") for r in objects)
            assert not any(f"/{other}/" in r or r.endswith(":::*") or r.endswith(f"{dvc}/*") for r in objects)
            assert all(not a.startswith("s3:*") for s in policy["Statement"]
                       for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"]))
    fraud = json.dumps(role_policy(prod, "team-risk-lab-training"))
    assert "acme-ml-datasets-prod/transactions/2026/*" in fraud and "clickstream" not in fraud
    recs = json.dumps(role_policy(prod, "team-reco-lab-training"))
    assert "acme-ml-datasets-prod/clickstream/*" in recs and "transactions" not in recs
    serving = json.dumps(role_policy(prod, "team-risk-lab-serving"))
    assert "acme-ml-models-prod/fraud/v3/*" in serving and "datasets" not in serving
    assert role_policy(prod, "team-reco-lab-serving") == {"Statement": []}   # no models, no policy


def test_team_group_gets_a_role_that_cannot_touch_isolation(dev):
    binding = dev.obj("RoleBinding", "team-member", "risk-lab")
    assert binding["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                                    "name": "team:risk-lab"}]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "team-member"}
    rules = dev.obj("Role", "team-member", "risk-lab")["rules"]
    writes = {(g, r) for rule in rules if "create" in rule["verbs"] or "delete" in rule["verbs"]
              for g in rule["apiGroups"] for r in rule["resources"]}
    for guarded in [("networking.k8s.io", "networkpolicies"), ("", "resourcequotas"), ("", "limitranges"),
                    ("", "serviceaccounts"), ("rbac.authorization.k8s.io", "roles"), ("", "namespaces")]:
        assert guarded not in writes
    assert ("", "pods") in writes and ("kubeflow.org", "pytorchjobs") in writes


def test_member_roles_are_mapped_into_the_team_group_with_access_entries():
    config = stack_yaml("dev")
    teams_of(config)[0].update(group="fraud-scientists", memberRoleArns=["arn:aws:iam::123456789012:role/fraud-ds"])
    rendered = Rendered(run_config(config))
    entry = rendered.one("aws:eks/accessEntry:AccessEntry", "team-risk-lab-member-0").inputs
    assert entry["principalArn"] == "arn:aws:iam::123456789012:role/fraud-ds"
    assert entry["kubernetesGroups"] == ["fraud-scientists"] and entry["type"] == "STANDARD"
    assert rendered.obj("RoleBinding", "team-member", "risk-lab")["subjects"][0]["name"] == "fraud-scientists"


def test_priority_classes_rank_inference_above_training_and_batch_last(dev):
    value = {p["metadata"]["name"]: p for p in dev.objects("PriorityClass")}
    inference, training = value[PRIORITY_CLASSES.inference], value[PRIORITY_CLASSES.training]
    notebook, batch = value[PRIORITY_CLASSES.notebook], value[PRIORITY_CLASSES.batch]
    assert inference["value"] > notebook["value"] > training["value"] > 0 > batch["value"]
    assert batch["preemptionPolicy"] == "Never" and notebook["preemptionPolicy"] == "Never"
    assert not any(p.get("globalDefault") for p in value.values())


# ---- onboarding: a name and a GPU quota are enough ------------------------------------------------------


def test_a_team_with_only_a_name_and_gpu_quota_is_a_complete_isolated_tenant():
    config = stack_yaml("dev")
    teams_of(config).append({"name": "forecast-lab", "gpuQuota": 1})
    rendered = Rendered(run_config(config))
    ns = "forecast-lab"
    assert rendered.obj("Namespace", ns)["metadata"]["labels"][labels.TEAM] == ns
    quota = rendered.obj("ResourceQuota", "team-quota", ns)["spec"]["hard"]["requests.nvidia.com/gpu"]
    queue = rendered.obj("ClusterQueue", ns)["spec"]["resourceGroups"][0]["flavors"][0]["resources"]
    gpu = next(r for r in queue if r["name"] == "nvidia.com/gpu")
    assert gpu["nominalQuota"] == 1 and quota == str(1 + gpu["borrowingLimit"])
    rendered.obj("LimitRange", "team-defaults", ns)
    rendered.obj("Role", "team-member", ns)
    rendered.obj("RoleBinding", "team-member", ns)
    assert {sa["metadata"]["name"] for sa in rendered.objects("ServiceAccount", ns)} == {"notebook", "training",
                                                                                        "serving"}
    assert {p["metadata"]["name"] for p in rendered.objects("NetworkPolicy", ns)} == {
        "default-deny", "allow-dns", "training-egress", "training-peers", "notebook-egress", "notebook-ingress",
        "inference-ingress", "inference-egress", "inference-metrics-ingress"}   # the last: Prometheus, port 9091
    assert isolation_problems(policies(rendered), ns, "us-west-2") == []
    assert reach(policies(rendered), ns, "training") == expected_training(rendered, config, ns)
    team = rendered.one("mlops:tenancy:Team", f"team-{ns}")
    assert team.parent.endswith("::mlops-platform") or "Stack" in team.parent


# ---- config rules --------------------------------------------------------------------------------------




@pytest.mark.parametrize("mutate, expected", [
    (lambda c: c["teams"].append({"name": c["teams"][0]["name"], "gpuQuota": 1}), "teams[2].name: must be unique"),
    (lambda c: c["teams"].append({"name": "Forecasting", "gpuQuota": 1}), "teams[2].name: must be a lower-case DNS"),
    (lambda c: c["teams"].append({"name": "forecast-lab", "gpuQuota": 1000}),
     "teams[2].gpuQuota: exceeds the "),
    (lambda c: c["teams"][0].update(memberRoleArns=["arn:aws:iam::123456789012:role/platform-admins"]),
     "teams[0].memberRoleArns[0]: is already in cluster.adminRoleArns"),
    (lambda c: [t.update(memberRoleArns=["arn:aws:iam::123456789012:role/ds"]) for t in c["teams"]],
     "teams[1].memberRoleArns[0]: is already in teams[0].memberRoleArns"),
    (lambda c: c["teams"][0].update(group="system:masters"), "teams[0].group: must be a Kubernetes group name"),
    (lambda c: c["teams"][0].update(packageIndex={"cidrs": ["0.0.0.0/0"]}),
     "teams[0].packageIndex.cidrs[0]: would open the pods to the whole internet"),
    (lambda c: c["teams"][0].update(packageIndex={}), "teams[0].packageIndex.proxy: set either cidrs"),
    (lambda c: c["teams"][0].update(packageIndex={"proxy": {"namespace": "proxy", "port": 3128}}),
     "teams[0].packageIndex.proxy: podLabels is required with namespace"),
    (lambda c: c["teams"][0].update(migQuota={"1g.10gb": 2}),
     "teams[0].migQuota[1g.10gb]: asks for nvidia.com/mig-1g.10gb, which no GPU pool offers"),
    (lambda c: c["teams"][0].update(migQuota={"big-slice": 2}), "teams[0].migQuota.big-slice: must be a MIG"),
    (lambda c: (c.update(gpu={"nodePools": []}), c["teams"][0].update(sharedGpuQuota=2)),
     "teams[0].sharedGpuQuota: asks for nvidia.com/gpu.shared, which no GPU pool offers"),
    (lambda c: c["teams"][0].update(sharedGpuQuota=5), "teams[0].sharedGpuQuota: exceeds the 4 nvidia.com/gpu.shared"),
])
def test_each_tenancy_rule_names_its_key(mutate, expected):
    config = raw("dev")
    mutate(config)
    assert_config_problem(config, expected)


def test_mig_quota_above_what_the_pools_supply_is_a_config_error():
    config = raw("dev")
    config["gpu"] = {"nodePools": [mig_pool()]}
    config["teams"][0]["migQuota"] = {"1g.5gb": 57}      # 8 GPUs x 7 instances = 56
    assert any(p.startswith("teams[0].migQuota[1g.5gb]: exceeds the 56 nvidia.com/mig-1g.5gb")
               for p in problems(config))
    config["teams"][0]["migQuota"] = {"1g.5gb": 56}
    parse_config(config)
