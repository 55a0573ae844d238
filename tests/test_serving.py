"""Model serving: the sizing rule, model config errors, the InferenceServices the platform writes, and the
KServe / Knative / Kourier install they run on."""

from __future__ import annotations

import json

import pytest

from components import catalog, labels, serving, tenancy
from components.config import ModelDeploymentConfig, parse_config
from components.endpoints import JUPYTERHUB_API, MLFLOW, NOTEBOOK_INGRESS, SERVING_INGRESS, PodSource
from tests import schemas
from tests.components import cluster_access, render_component, team_access
from tests.conftest import Rendered, assert_config_problem, raw_config as raw

PREFIX = "mlops-platform:"
ISVC = "kubernetes:serving.kserve.io/v1beta1:InferenceService"
# The ClusterServingRuntimes the kserve-runtime-configs chart (v0.20.0) ships.
CHART_RUNTIMES = {"kserve-sklearnserver", "kserve-xgbserver", "kserve-lgbserver", "kserve-torchserve",
                  "kserve-tensorflow-serving", "kserve-tritonserver", "kserve-huggingfaceserver", "kserve-mlserver",
                  "kserve-paddleserver", "kserve-pmmlserver", "kserve-predictiveserver"}


def model(**overrides) -> ModelDeploymentConfig:
    fields = {"name": "m", "location": "s3://models/m/v1", "framework": "xgboost", "peakRps": 100, **overrides}
    return ModelDeploymentConfig.model_validate(fields)


# ---- the sizing rule ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("overrides, prod, expected", [
    # The seed's fraud model in prod: xgboost, 50 rps per replica x 80% CPU target = 40 usable -> 2000 / 40 = 50.
    ({"peakRps": 2000}, True, (2, 50)),
    ({"peakRps": 200}, False, (1, 5)),                          # the same model in dev
    ({"peakRps": 2001}, True, (2, 51)),                         # one request more needs one replica more
    ({"peakRps": 10}, True, (2, 2)),                            # never fewer than the HA minimum
    ({"peakRps": 2000, "latencyP99Ms": 50}, True, (2, 100)),    # half the latency budget: half the usable rps
    ({"peakRps": 2000, "latencyP99Ms": 500}, True, (2, 50)),    # a looser target never shrinks below capacity
    ({"peakRps": 2000, "capacityRpsPerReplica": 125}, True, (2, 20)),   # a measured figure replaces the table
    ({"peakRps": 300, "framework": "pytorch"}, True, (2, 19)),          # 20 rps on CPU: 300 / 16 = 18.75
    ({"peakRps": 300, "framework": "pytorch", "gpu": True}, True, (2, 3)),  # 150 rps on a GPU: 300 / 120
])
def test_sizing_rule(overrides, prod, expected):
    size = model(**overrides).sizing(is_prod=prod)
    assert (size.min_replicas, size.max_replicas) == expected
    assert (size.scale_metric, size.scale_target) == ("cpu", 80)


def test_seed_fraud_model_renders_min_2_max_50_cpu_80_in_prod(prod, dev):
    spec = prod.obj("InferenceService", "fraud-model", "risk-lab")["spec"]["predictor"]
    assert (spec["minReplicas"], spec["maxReplicas"], spec["scaleMetric"], spec["scaleTarget"]) == (2, 50, "cpu", 80)
    dev_spec = dev.obj("InferenceService", "fraud-model", "risk-lab")["spec"]["predictor"]
    assert (dev_spec["minReplicas"], dev_spec["maxReplicas"]) == (1, 5)


def test_every_framework_has_serving_figures_and_a_runtime_the_chart_ships():
    frameworks = ModelDeploymentConfig.model_fields["framework"].annotation.__args__
    table = catalog.serving_frameworks()
    assert set(frameworks) == set(table)
    assert {f.runtime for f in table.values()} <= CHART_RUNTIMES
    assert all(f.rps_per_replica > 0 and f.min_p99_ms < f.reference_p99_ms for f in table.values())


# ---- model config errors -----------------------------------------------------------------------------------




@pytest.mark.parametrize("change, expected", [
    (lambda m: m.pop("location"), "teams[0].models[0].location: is required"),
    (lambda m: m.update(location="gs://models/fraud/v3"), "teams[0].models[0].location: must be an S3 location"),
    (lambda m: m.update(location="/models/fraud"), "teams[0].models[0].location: must be an S3 location"),
    (lambda m: m.update(framework="sklearn", gpu=True),
     "teams[0].models[0].gpu: cannot be true for framework 'sklearn'"),
    (lambda m: m.update(latencyP99Ms=5), "teams[0].models[0].latencyP99Ms: is below the 10 ms"),
    (lambda m: m.update(peakRps=0), "teams[0].models[0].peakRps: must be a positive number"),
    (lambda m: m.update(canary={"location": m["location"]}), "teams[0].models[0].canary.location: must differ"),
    (lambda m: m.update(canary={"location": "s3://x/fraud/v4", "trafficPercent": 100}),
     "teams[0].models[0].canary.trafficPercent: must be at most 99"),
    (lambda m: m.update(canary={"trafficPercent": 5}), "teams[0].models[0].canary.location: is required"),
    (lambda m: m.update(runtime="Triton Server"), "teams[0].models[0].runtime: must be a lower-case DNS label"),
])
def test_model_config_errors_name_their_key(change, expected):
    config = raw()
    change(config["teams"][0]["models"][0])
    assert_config_problem(config, expected)


def test_a_team_quota_too_small_for_its_models_peak_is_a_config_error():
    config = raw("prod")
    config["teams"][0]["cpuQuota"] = 40       # the fraud model needs 50 replicas x 1 CPU at its peak
    assert_config_problem(config, "teams[0].cpuQuota: is below the 50 CPUs")


# ---- the InferenceServices ---------------------------------------------------------------------------------


def test_inference_service_runs_in_the_team_namespace_as_its_serving_account(dev):
    isvc = dev.obj("InferenceService", "fraud-model", "risk-lab")
    predictor = isvc["spec"]["predictor"]
    assert predictor["serviceAccountName"] == "serving"
    assert predictor["labels"][labels.JOB_TYPE] == "inference"       # what the team's NetworkPolicies select
    assert predictor["model"] == {
        "modelFormat": {"name": "xgboost"}, "runtime": "kserve-xgbserver",
        "storageUri": "s3://acme-ml-models-dev/fraud/v3",
        "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}},
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    assert predictor["annotations"]["autoscaling.knative.dev/class"] == "hpa.autoscaling.knative.dev"
    assert "canaryTrafficPercent" not in predictor
    # It waits for KServe's runtimes and for the team's tenant (namespace, quota, NetworkPolicies).
    registration = dev.one(ISVC)
    team = dev.one("mlops:tenancy:Team", "team-risk-lab")
    team_objects = {r.urn for r in dev.resources if r.parent == team.urn and r.custom}
    runtimes = dev.one("kubernetes:helm.sh/v3:Release", "serving-kserve-runtimes")
    assert team_objects and team_objects | {runtimes.urn} <= set(registration.dependencies)


# One team with a canary on one model and a GPU model, each component rendered alone (tests/components.py): the
# serving behaviour needs no whole stack.
TEAM = {"name": "team-a", "gpuQuota": 3, "models": [          # the ranker's 3 replicas at peak, one GPU each
    {"name": "scorer", "location": "s3://team-a-models/scorer/v3", "framework": "xgboost", "peakRps": 200,
     "canary": {"location": "s3://team-a-models/scorer/v4", "trafficPercent": 5}},
    {"name": "ranker", "location": "s3://team-a-models/ranker/v1", "framework": "pytorch", "peakRps": 300,
     "gpu": True}]}


@pytest.fixture(scope="module")
def variants() -> Rendered:
    """The Serving component alone, for TEAM."""
    config = parse_config({"environment": "dev", "teams": [TEAM]})

    def build() -> None:
        access = cluster_access()
        serving.Serving("serving", serving.ServingArgs(
            access=access, is_prod=False, teams=config.teams,
            team_access=[team_access(t.name, access) for t in config.teams]))
    return render_component(build)


def test_canary_rolls_the_new_version_out_to_its_share(variants):
    predictor = variants.obj("InferenceService", "scorer", "team-a")["spec"]["predictor"]
    assert predictor["canaryTrafficPercent"] == 5
    assert predictor["model"]["storageUri"] == "s3://team-a-models/scorer/v4"
    assert "canaryTrafficPercent" not in variants.obj("InferenceService", "ranker", "team-a")["spec"]["predictor"]


def test_the_serving_role_may_read_the_canary_version_too():
    """The Team component alone: its serving role reads both versions of a model under a canary."""
    (team,) = parse_config({"environment": "dev", "teams": [TEAM]}).teams

    def build() -> None:
        tenancy.Team("team-a", tenancy.TeamArgs(
            config=team, access=cluster_access(), mlflow=MLFLOW, serving_ingress=SERVING_INGRESS,
            jupyterhub_api=JUPYTERHUB_API, notebook_ingress=NOTEBOOK_INGRESS, s3_cidrs=["52.218.128.0/17"],
            sts_cidrs=["10.0.0.10/32"], datasets=[]))
    rendered = render_component(build)
    role = rendered.one("aws:iam/role:Role", "team-a-serving")
    policy = rendered.one("aws:iam/rolePolicy:RolePolicy", "team-a-serving-inline").inputs["policy"]
    resources = {r for st in json.loads(policy)["Statement"] for r in
                 ([st["Resource"]] if isinstance(st["Resource"], str) else st["Resource"])}
    assert {"arn:aws:s3:::team-a-models/scorer/v3/*", "arn:aws:s3:::team-a-models/scorer/v4/*"} <= resources and role


def test_gpu_model_asks_for_a_gpu_in_limits_tolerates_the_taint_and_targets_a_gpu_pool(variants):
    predictor = variants.obj("InferenceService", "ranker", "team-a")["spec"]["predictor"]
    assert predictor["model"]["resources"]["limits"][labels.GPU_RESOURCE] == "1"
    assert predictor["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    terms = predictor["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [{"key": labels.GPU_TYPE, "operator": "Exists"}]}]
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (1, 3)


def test_canary_and_gpu_inference_services_validate_against_the_kserve_schema(variants, schemas_dir):
    isvcs = variants.objects("InferenceService")
    assert len(isvcs) == 2
    assert [p for m in isvcs for p in schemas.errors(m, schemas_dir)] == []
    broken = {**isvcs[0], "spec": {"predictor": {**isvcs[0]["spec"]["predictor"], "scaleMetric": "gpu"}}}
    assert schemas.errors(broken, schemas_dir)


def test_variants_pass_the_policy_pack_in_a_stack_with_gpu_pools(variants, dev):
    """The canary and GPU InferenceServices beside a whole stack's pools and team namespaces (the dev fixture)."""
    from policies import POLICIES
    from preview.check import evaluate

    isvcs = variants.of_type(ISVC)
    assert len(isvcs) == 2
    assert [v.message for v in evaluate(POLICIES, [*dev.resources, *isvcs]) if v.mandatory] == []


# ---- KServe, Knative, Kourier ------------------------------------------------------------------------------


def test_charts_are_pinned_and_kserve_matches_the_validated_schemas(dev):
    releases = {r.inputs["name"]: r.inputs for r in dev.of_type("kubernetes:helm.sh/v3:Release")}
    for name, chart in [("kserve-crd", "kserve-crd"), ("kserve", "kserve-resources"),
                        ("kserve-runtime-configs", "kserve-runtime-configs")]:
        assert releases[name]["chart"] == f"oci://ghcr.io/kserve/charts/{chart}"
        assert releases[name]["version"] == "v0.20.0" and releases[name]["namespace"] == "kserve"
    assert releases["cert-manager"]["version"] == serving.CERT_MANAGER["version"]
    assert releases["metrics-server"]["version"] == serving.METRICS_SERVER["version"]
    for name in ("cert-manager", "metrics-server", "kserve-crd", "kserve", "kserve-runtime-configs"):
        assert releases[name]["version"] and "latest" not in releases[name]["version"]


def test_kserve_runs_serverless_on_kourier_without_istio(dev):
    controller = dev.helm("kserve")["values"]["kserve"]["controller"]
    assert controller["deploymentMode"] == "Knative"
    assert controller["gateway"]["disableIstioVirtualHost"] is True
    local_gateway = controller["gateway"]["localGateway"]["gatewayService"]
    assert local_gateway == "kourier-internal.kourier-system.svc.cluster.local"
    assert dev.helm("kserve-runtime-configs")["values"] == {"kserve": {"servingruntime": {"enabled": True}}}
    assert dev.helm("cert-manager")["values"]["crds"] == {"enabled": True, "keep": True}


def test_knative_and_kourier_come_from_pinned_release_manifests(dev):
    files = {r.name: r.inputs["file"] for r in dev.of_type("kubernetes:yaml/v2:ConfigFile")}
    knative = "https://github.com/knative/serving/releases/download/knative-v1.21.1"
    assert files == {
        "serving-knative-crds": f"{knative}/serving-crds.yaml",
        "serving-knative-core": f"{knative}/serving-core.yaml",
        "serving-knative-hpa": f"{knative}/serving-hpa.yaml",
        "serving-kourier":
            "https://github.com/knative-extensions/net-kourier/releases/download/knative-v1.21.0/kourier.yaml",
    }
    assert dev.obj("ConfigMap", "config-network", "knative-serving")["data"] == {
        "ingress-class": "kourier.ingress.networking.knative.dev"}
    features = dev.obj("ConfigMap", "config-features", "knative-serving")["data"]
    assert all(features[f"kubernetes.podspec-{f}"] == "enabled"
               for f in ("affinity", "tolerations", "nodeselector", "priorityclassname"))
    assert dev.obj("Service", "kourier", "kourier-system")["metadata"]["annotations"][
        "service.beta.kubernetes.io/aws-load-balancer-internal"] == "true"


def test_prod_keeps_two_activators_and_kourier_gateways(dev, prod):
    assert dev.objects("HorizontalPodAutoscaler") == []
    hpas = {(h["metadata"]["namespace"], h["metadata"]["name"]): h["spec"]["minReplicas"]
            for h in prod.objects("HorizontalPodAutoscaler")}
    assert hpas == {("knative-serving", "activator"): 2, ("kourier-system", "3scale-kourier-gateway"): 2}


def test_the_install_serves_requests_from_where_the_team_policies_expect_them():
    # SERVING_INGRESS is what team NetworkPolicies trust; the install refuses to disagree with it.
    serving._check_ingress(SERVING_INGRESS)
    moved = (PodSource(namespace="knative-serving", pod_labels={"app": "3scale-kourier-gateway"}), SERVING_INGRESS[1])
    with pytest.raises(ValueError, match="Knative/Kourier run as"):
        serving._check_ingress(moved)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_inference_services_run_restricted(stack, request):
    """Pod Security `restricted` for the model server (the queue-proxy and storage-initializer are Knative's and
    KServe's): non-root, runtime seccomp, no privilege escalation, no capabilities."""
    services = request.getfixturevalue(stack).objects("InferenceService")
    assert services
    for isvc in services:
        predictor = isvc["spec"]["predictor"]
        pod, container = predictor["securityContext"], predictor["model"]["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
        assert container == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
