"""A small stack for the observability tests, written here (not the shipped stack files): one team with a
registry-mode model, a spot GPU NodePool for training, an on-demand GPU node group, and a price table of round numbers
so the expected costs are plain arithmetic. Rendered once per test process."""

from __future__ import annotations

import copy

import pytest

from components import catalog
from tests.conftest import Rendered, run_config

P = "mlops-platform:"
TEAM = "alpha"
RUN_ID = "4c1e9a7f2b8d4e6a9f0c3b5d7e1a2c4f"          # an MLflow run id: 32 hex digits
CONFIG = {
    "aws:region": "us-west-2",
    P + "environment": "dev",
    P + "protectData": False,
    P + "network": {"vpcCidr": "10.40.0.0/16", "azCount": 2, "natGateways": "single"},
    P + "cluster": {
        "kubernetesVersion": "1.34", "adminRoleArns": ["arn:aws:iam::123456789012:role/platform-admins"],
        "logRetentionDays": 7,
        "systemNodes": {"instanceTypes": ["m6i.large"], "capacityType": "ON_DEMAND", "minSize": 2, "desiredSize": 2,
                        "maxSize": 3},
        "gpuNodeGroups": [{"name": "t4", "instanceTypes": ["g4dn.xlarge"], "capacityType": "ON_DEMAND", "minSize": 0,
                           "desiredSize": 0, "maxSize": 2}]},
    P + "teams": [{"name": TEAM, "gpuQuota": 2, "notebookProfiles": ["cpu"], "models": [
        {"name": "scorer", "location": "s3://alpha-models/scorer/v1", "framework": "sklearn", "peakRps": 20,
         "rollout": {"mode": "registry", "registeredModel": "scorer", "alias": "champion"}}]}],
    P + "gpu": {"nodePools": [{"name": "training", "instanceTypes": ["g4dn.xlarge"], "capacityTypes": ["spot"],
                               "gpuLimit": 2}]},
    P + "notebooks": {"auth": {"type": "dummy", "dummyUsers": {"alice": [TEAM]}}},
}
# Round $/hour figures instead of prices.yaml's, so the expected costs are plain arithmetic.
PRICES = {"m6i.large": {"onDemand": 0.10, "spotTypical": 0.04}, "g4dn.xlarge": {"onDemand": 0.50, "spotTypical": 0.20}}
_RENDERED: dict[str, Rendered] = {}


def fixture_stack() -> Rendered:
    """The stack rendered by the real program (offline mocks) with PRICES as prices.yaml's instances."""
    if "stack" not in _RENDERED:
        data = copy.deepcopy(catalog.prices())
        data["instances"] = copy.deepcopy(PRICES)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(catalog, "prices", lambda: data)
            _RENDERED["stack"] = Rendered(run_config(copy.deepcopy(CONFIG)))
    return _RENDERED["stack"]


def rule_files(rendered: Rendered) -> dict[str, dict]:
    """PrometheusRule name -> spec, as the Prometheus operator hands each to Prometheus."""
    return {o["metadata"]["name"]: o["spec"] for o in rendered.objects("PrometheusRule")}
