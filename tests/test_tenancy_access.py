"""Who may do what in a team namespace: only the hub labels a pod `job-type: notebook` (the rendered
ValidatingAdmissionPolicy's CEL, evaluated with cel-python as the API server would), and no team group can exec,
attach or port-forward into a pod."""

from __future__ import annotations

import celpy
import pytest
from celpy import celtypes, json_to_cel

from components import labels
from components.endpoints import NOTEBOOK_SPAWNER
from components.tenancy import SHELL_SUBRESOURCES
from tests.conftest import Rendered, run_config, stack_yaml

PREFIX = "mlops-platform:"

# ---- only the hub may label a pod job-type: notebook -----------------------------------------------------

_CEL = celpy.Environment()


def _label_admission(policy: dict, operation: str, user: str, new_type: str | None,
                     old_type: str | None = None) -> list[str]:
    """The messages the API server would return (empty: admitted), evaluating the rendered CEL."""
    def pod(job_type: str | None):
        return {"metadata": {"name": "p", "labels": {labels.JOB_TYPE: job_type} if job_type else {}}}

    activation = {
        "object": json_to_cel(pod(new_type)),
        "oldObject": json_to_cel(pod(old_type) if operation == "UPDATE" else None),
        "request": json_to_cel({"operation": operation, "userInfo": {"username": user}}),
    }
    messages = []
    for check in policy["spec"]["validations"]:
        allowed = _CEL.program(_CEL.compile(check["expression"])).evaluate(activation)
        assert isinstance(allowed, celtypes.BoolType), allowed
        if not allowed:
            messages.append(check["message"])
    return messages


@pytest.mark.parametrize("operation, user, new_type, old_type, admitted", [
    ("CREATE", NOTEBOOK_SPAWNER, "notebook", None, True),             # the hub spawns a notebook
    ("CREATE", "alice", "notebook", None, False),                     # a user fakes one for its egress
    ("CREATE", "system:serviceaccount:kube-system:replicaset-controller", "notebook", None, False),  # via a Deployment
    ("CREATE", "alice", "training", None, True),
    ("CREATE", "alice", None, None, True),
    ("UPDATE", "alice", "notebook", "training", False),               # relabelling a running pod
    ("UPDATE", "system:node:ip-10-0-0-1", "notebook", "notebook", True),   # status updates of a hub pod
])
def test_only_the_hub_may_label_pods_as_notebooks(dev, operation, user, new_type, old_type, admitted):
    policy = dev.obj("ValidatingAdmissionPolicy", "mlops-notebook-label")
    assert (_label_admission(policy, operation, user, new_type, old_type) == []) is admitted


def test_the_notebook_label_policy_binds_to_team_namespaces_and_denies(dev):
    binding = dev.obj("ValidatingAdmissionPolicyBinding", "mlops-notebook-label")["spec"]
    assert binding["validationActions"] == ["Deny", "Audit"]
    assert binding["matchResources"]["namespaceSelector"]["matchExpressions"] == [
        {"key": labels.TEAM, "operator": "Exists"}]


def test_without_jupyterhub_no_pod_may_claim_to_be_a_notebook():
    config = stack_yaml("dev")
    config[PREFIX + "notebooks"] = {**config.get(PREFIX + "notebooks", {}), "enabled": False}
    policy = Rendered(run_config(config)).obj("ValidatingAdmissionPolicy", "mlops-notebook-label")
    assert _label_admission(policy, "CREATE", NOTEBOOK_SPAWNER, "notebook")


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_no_team_group_can_exec_attach_or_port_forward(stack, request):
    """Every Role or ClusterRole bound to a Group in a team namespace: no shell into pods (a colleague's notebook
    server included). RBAC cannot say "your own pod only", so the subresources are not granted at all."""
    r = request.getfixturevalue(stack)
    teams = {ns["metadata"]["name"] for ns in r.objects("Namespace") if labels.TEAM in ns["metadata"].get("labels", {})}
    assert teams
    for binding in r.objects("RoleBinding"):
        if binding["metadata"]["namespace"] not in teams or not any(
                s["kind"] in ("Group", "User") for s in binding["subjects"]):
            continue
        ref = binding["roleRef"]
        role = (r.obj("Role", ref["name"], binding["metadata"]["namespace"]) if ref["kind"] == "Role"
                else r.obj("ClusterRole", ref["name"]))
        granted = {res for rule in role["rules"] if {"", "*"} & set(rule["apiGroups"]) for res in rule["resources"]}
        assert not granted & {*SHELL_SUBRESOURCES, "pods/*", "*"}, (binding["metadata"], granted)
