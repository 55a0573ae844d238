"""Model promotion as declared: the rollout service, its least-privilege RBAC and NetworkPolicies, the webhook Job,
Pulumi ignoring exactly the fields the service owns, and the config rules. The service's behaviour against a real
MLflow is in tests/test_rollout_service.py."""

from __future__ import annotations

import copy
import json

import pytest

from components import labels, mlflow_auth, model_rollout
from components.endpoints import MLFLOW, PROMETHEUS_API
from components.mlflow import MLFLOW_IMAGE
from components.serving import ROLLOUT_OWNED_FIELDS
from policies import netpol
from policies.netpol import EGRESS, INGRESS, Peer, Port, Reach
from tests.conftest import Rendered, config_problems, raw_config, run_config, stack_yaml

PREFIX = "mlops-platform:"
TEAM = "promo"
REGISTRY = {"mode": "registry", "registeredModel": "churn-detector", "alias": "champion", "canaryPercent": 10,
            "analysisWindow": "5m", "maxErrorRatePercent": 2, "minRequests": 50}


def promo_team(registry: dict | None = REGISTRY) -> dict:
    """A new team, written as the README's "Adding a team" does, with one registry-mode and one manual model."""
    models = [{"name": "churn", "location": "s3://promo-models/churn/v1", "framework": "sklearn", "peakRps": 20,
               **({"rollout": registry} if registry else {})},
              {"name": "legacy", "location": "s3://promo-models/legacy/v1", "framework": "sklearn", "peakRps": 20}]
    return {"name": TEAM, "gpuQuota": 0, "cpuQuota": 32, "memoryQuotaGib": 128, "notebookProfiles": ["cpu"],
            "models": models}


def with_team(stack: str, team: dict) -> dict:
    config = copy.deepcopy(stack_yaml(stack))
    config[PREFIX + "teams"] = [*config[PREFIX + "teams"], team]
    config[PREFIX + "observability"] = {**config.get(PREFIX + "observability", {}), "enabled": True}
    return config


@pytest.fixture(scope="module")
def rendered() -> Rendered:
    return Rendered(run_config(with_team("dev", promo_team()), stack="dev"))


def rollout_objects(r: Rendered, kind: str) -> list[dict]:
    return [o for o in r.objects(kind) if o["metadata"].get("labels", {}).get("app.kubernetes.io/name")
            == model_rollout.NAME]


def test_the_service_runs_the_shipped_code_with_the_mlflow_image_and_this_stacks_models(rendered):
    deployment = rendered.obj("Deployment", model_rollout.NAME, MLFLOW.namespace)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == MLFLOW_IMAGE and container["command"] == ["python", "/app/rollout.py"]
    data = rendered.obj("ConfigMap", model_rollout.NAME, MLFLOW.namespace)["data"]
    assert data["rollout.py"] == (model_rollout.SERVICE_DIR / "rollout.py").read_text()
    ours = [m for m in json.loads(data["rollout.json"])["models"] if m["namespace"] == TEAM]
    assert ours == [{"namespace": TEAM, "inferenceService": "churn", "registeredModel": "churn-detector",
                     "alias": "champion", "canaryPercent": 10, "windowSeconds": 300, "maxErrorRate": 0.02,
                     "maxLatencyP99Ms": 100, "minRequests": 50}]
    env = {e["name"]: e for e in container["env"]}
    assert env["PROMETHEUS_URL"]["value"] == PROMETHEUS_API.url and env["MLFLOW_TRACKING_URI"]["value"] == MLFLOW.url
    assert env["WEBHOOK_SECRET"]["valueFrom"]["secretKeyRef"] == {"name": model_rollout.NAME, "key": "webhook-secret"}
    job = next(o for o in rendered.objects("Job", MLFLOW.namespace)
               if o["metadata"]["name"].startswith(f"{model_rollout.NAME}-register-"))
    job_env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert job_env["WEBHOOK_URL"] == f"http://{model_rollout.NAME}.{MLFLOW.namespace}.svc.cluster.local/webhook"


def test_the_service_and_the_webhook_job_use_the_rollout_user_with_edit_on_the_registry_models_only(rendered):
    """MLflow runs with basic auth: the service and the registration Job authenticate as the rollout user, whose
    credentials sit in MLflow's namespace only, and the users Job grants it EDIT on the registry-mode models only
    (tests/test_mlflow_auth.py proves those rights on a real server)."""
    ns = MLFLOW.namespace
    creds = {k: (mlflow_auth.ROLLOUT_SECRET, k) for k in (mlflow_auth.USERNAME_KEY, mlflow_auth.PASSWORD_KEY)}
    register = next(o for o in rendered.objects("Job", ns)
                    if o["metadata"]["name"].startswith(f"{model_rollout.NAME}-register-"))
    service = rendered.obj("Deployment", model_rollout.NAME, ns)
    for pod in (service["spec"]["template"]["spec"], register["spec"]["template"]["spec"]):
        env = pod["containers"][0]["env"]
        assert {e["name"]: (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
                for e in env if e["name"] in creds} == creds
    assert [o["metadata"]["namespace"] for o in rendered.objects("Secret")
            if o["metadata"]["name"] == mlflow_auth.ROLLOUT_SECRET] == [ns]
    users_job = next(o for o in rendered.objects("Job", ns)
                     if o["metadata"].get("labels") == mlflow_auth.BOOTSTRAP_LABELS)
    users_env = {e["name"]: e.get("value") for e in users_job["spec"]["template"]["spec"]["containers"][0]["env"]}
    registry_models = sorted({m["registeredModel"] for m in json.loads(rendered.obj(
        "ConfigMap", model_rollout.NAME, ns)["data"]["rollout.json"])["models"]})
    assert "churn-detector" in registry_models
    assert json.loads(users_env["ROLLOUT_MODELS"]) == registry_models
    assert (users_env["ROLLOUT_USERNAME"], users_env["ROLLOUT_PERMISSION"]) == (mlflow_auth.ROLLOUT_USERNAME, "EDIT")


def test_the_service_may_patch_exactly_the_registry_mode_inference_services(rendered):
    roles = [o for o in rollout_objects(rendered, "Role")]
    rules = {r["metadata"]["namespace"]: r["rules"] for r in roles}
    assert rules[TEAM] == [
        {"apiGroups": ["serving.kserve.io"], "resources": ["inferenceservices"], "resourceNames": ["churn"],
         "verbs": ["get", "patch"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]}]
    assert not [o for o in rollout_objects(rendered, "ClusterRole")]
    bindings = {b["metadata"]["namespace"]: b["subjects"] for b in rollout_objects(rendered, "RoleBinding")}
    assert bindings[TEAM] == [{"kind": "ServiceAccount", "name": model_rollout.NAME, "namespace": MLFLOW.namespace}]


def test_pulumi_ignores_exactly_the_fields_the_service_owns_and_only_for_registry_models(rendered):
    services = {r.name: r for r in rendered.of_type("kubernetes:serving.kserve.io/v1beta1:InferenceService")}
    assert services[f"serving-{TEAM}-churn"].ignore_changes == ROLLOUT_OWNED_FIELDS == [
        "spec.predictor.model.storageUri", "spec.predictor.canaryTrafficPercent"]
    assert services[f"serving-{TEAM}-legacy"].ignore_changes == []
    spec = rendered.obj("InferenceService", "churn", TEAM)["spec"]["predictor"]
    assert spec["model"]["storageUri"] == "s3://promo-models/churn/v1" and "canaryTrafficPercent" not in spec


def test_network_policies_allow_the_four_peers_and_nothing_else(rendered):
    policies = rendered.objects("NetworkPolicy")
    ns, service = MLFLOW.namespace, model_rollout.SERVICE_LABELS
    egress = netpol.allowed(policies, ns, service, EGRESS)
    cidrs = {r.peer.cidr for r in egress if r.peer.cidr}
    assert cidrs and all(r.port == Port("TCP", 443) for r in egress if r.peer.cidr)
    pod_peers = {(str(r.peer), str(r.port)) for r in egress if r.peer.cidr is None}
    dns = {(s, p) for s, p in pod_peers if "k8s-app=kube-dns" in s}
    assert {p for _, p in dns} == {"UDP/53", "TCP/53"}
    assert pod_peers - dns == {
        (str(Peer.pods_in(ns, MLFLOW.pod_labels)), f"TCP/{MLFLOW.port}"),
        (str(Peer(namespaces=netpol.Selector.namespace(PROMETHEUS_API.namespace),
                  pods=netpol.Selector.of(PROMETHEUS_API.pod_labels))), f"TCP/{PROMETHEUS_API.port}"),
    }
    ingress = netpol.allowed(policies, ns, service, INGRESS)
    assert {str(r.port) for r in ingress} == {f"TCP/{model_rollout.PORT}"}
    assert Reach(Peer.pods_in(ns, model_rollout.SERVICE_LABELS), Port("TCP", model_rollout.PORT)) in \
        netpol.allowed(policies, ns, MLFLOW.pod_labels, EGRESS)
    # The registration Job reaches MLflow and DNS only: no API server, no Prometheus.
    job_egress = netpol.allowed(policies, ns, model_rollout.REGISTER_LABELS, EGRESS)
    assert not [r for r in job_egress if r.peer.cidr] and len(job_egress) == 3


def test_mlflow_server_admits_exactly_team_namespaces_and_its_three_jobs_and_reaches_the_service_only(rendered):
    """Both sides' MLflow NetworkPolicies together (components/mlflow.py and this component): the server is reached
    from team namespaces, the users Job (its admin), the rollout service and the webhook Job, on its port; among pods
    it reaches the rollout service only (the rest of its egress is the database, S3 and STS CIDRs)."""
    policies = rendered.objects("NetworkPolicy")
    ns, port = MLFLOW.namespace, Port("TCP", MLFLOW.port)
    ingress = netpol.allowed(policies, ns, MLFLOW.pod_labels, INGRESS)
    assert {r.port for r in ingress} == {port}
    teams = {r.peer for r in ingress if r.peer.namespaces and r.peer.namespaces.expressions}
    assert [str(p.namespaces) for p in teams] == [str(netpol.Selector(expressions=frozenset(
        {(labels.TEAM, "Exists", frozenset())})))] and all(p.pods.everything for p in teams)
    assert {r.peer for r in ingress} - teams == {Peer.pods_in(ns, mlflow_auth.BOOTSTRAP_LABELS),
                                                 Peer.pods_in(ns, model_rollout.SERVICE_LABELS),
                                                 Peer.pods_in(ns, model_rollout.REGISTER_LABELS)}
    egress = netpol.allowed(policies, ns, MLFLOW.pod_labels, EGRESS)
    pods = {(r.peer, r.port) for r in egress if r.peer.cidr is None and "kube-dns" not in str(r.peer)}
    assert pods == {(Peer.pods_in(ns, model_rollout.SERVICE_LABELS), Port("TCP", model_rollout.PORT))}


def test_nothing_is_declared_without_a_registry_model():
    r = Rendered(run_config(with_team("dev", promo_team(registry=None)), stack="dev"))
    assert not r.of_type("mlops:rollout:ModelRollout") and not rollout_objects(r, "Deployment")


@pytest.mark.parametrize("change, path, words", [
    (lambda m: m["rollout"].pop("registeredModel"), "rollout", "registeredModel is required"),
    (lambda m: m.update(canary={"location": "s3://promo-models/churn/v2"}), "", "remove the canary block"),
    (lambda m: m["rollout"].update(canaryPercent=80), "rollout.canaryPercent", "must be at most 50"),
    (lambda m: m["rollout"].update(analysisWindow="ten minutes"), "rollout.analysisWindow", ""),
])
def test_rollout_config_mistakes_are_reported_at_their_key(change, path, words):
    config = raw_config("dev")
    team = promo_team(dict(REGISTRY))
    change(team["models"][0])
    config["teams"] = [*config["teams"], team]
    i = len(config["teams"]) - 1
    found = [p for p in config_problems(config) if p.startswith(f"teams[{i}].models[0]")]
    assert found and any(p.startswith(f"teams[{i}].models[0]{'.' + path if path else ''}") and words in p
                         for p in found), found


def test_registry_mode_needs_observability_and_one_alias_drives_one_model():
    config = raw_config("dev")
    twin = promo_team(dict(REGISTRY))
    twin["models"][1]["rollout"] = dict(REGISTRY)
    config["teams"] = [*config["teams"], twin]
    config["observability"] = {**config.get("observability", {}), "enabled": False}
    i = len(config["teams"]) - 1
    found = config_problems(config)
    assert any(p.startswith(f"teams[{i}].models[0].rollout.mode: registry needs observability.enabled")
               for p in found), found
    assert any(p.startswith(f"teams[{i}].models[1].rollout.registeredModel") and "already drives" in p
               for p in found), found
