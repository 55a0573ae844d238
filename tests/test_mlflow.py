"""MLflow: the database password stays secret, the data stores are encrypted, private and (in prod) protected, and
the tracking server is reachable exactly as team code expects and from nowhere else."""

from __future__ import annotations

import json

import pulumi
import pytest

from components import labels, mlflow
from components.endpoints import MLFLOW
from preview import render
from preview.aws_mocks import S3_PREFIX_LISTS, AwsLikeMocks
from tests.conftest import assert_config_problem, stack_yaml

PREFIX = "mlops-platform:"
RDS = "aws:rds/instance:Instance"
BUCKET = "aws:s3/bucket:Bucket"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_database_password_never_appears_in_plain_text_in_the_build_output(stack, request, tmp_path):
    """Every generated secret (whatever its resource is called) is searched in every written file; the mutation
    tests in tests/test_secrets.py show the search finds them when masking is off."""
    rendered = request.getfixturevalue(stack)
    render.write(rendered.run, tmp_path, [])
    assert rendered.generated
    texts = {str(p): p.read_text() for p in tmp_path.rglob("*") if p.is_file()}
    assert [(name, path) for name, value in rendered.generated.items() for path, text in texts.items()
            if value in text] == []
    assert rendered.one(RDS).inputs["password"] == "[secret]"
    secret = rendered.obj("Secret", mlflow.DATABASE_SECRET, "mlflow")
    assert secret["stringData"] == {"MLFLOW_BACKEND_STORE_URI": "[secret]", mlflow.WEBHOOK_KEY_ENV: "[secret]"} \
        and "data" not in secret


def mock_outputs(registration) -> dict:
    """The outputs the offline preview's mock computed for a recorded resource."""
    args = pulumi.runtime.MockResourceArgs(typ=registration.type, name=registration.name, inputs=registration.inputs,
                                           provider="", resource_id="")
    return AwsLikeMocks().new_resource(args)[1]


def test_rds_is_encrypted_private_and_reachable_only_from_the_cluster(dev):
    db = dev.one(RDS).inputs
    assert db["engine"] == "postgres" and db["storageEncrypted"] is True and db["publiclyAccessible"] is False
    assert db["kmsKeyId"] == mock_outputs(dev.one("aws:kms/key:Key", "mlflow-data"))["arn"]
    cluster = dev.one("aws:eks/cluster:Cluster")
    assert dev.one("aws:rds/subnetGroup:SubnetGroup").inputs["subnetIds"] == cluster.inputs["vpcConfig"]["subnetIds"]
    assert db["vpcSecurityGroupIds"] == [mock_outputs(dev.one("aws:ec2/securityGroup:SecurityGroup",
                                                              "mlflow-database"))["id"]]
    rules = [r.inputs for r in dev.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
             if r.name.startswith("mlflow-")]
    assert len(rules) == 1
    assert rules[0]["fromPort"] == rules[0]["toPort"] == 5432 and rules[0]["ipProtocol"] == "tcp"
    assert rules[0]["referencedSecurityGroupId"] == mock_outputs(cluster)["vpcConfig"]["clusterSecurityGroupId"]
    assert "cidrIpv4" not in rules[0] and "cidrIpv6" not in rules[0]


def test_prod_database_and_bucket_are_protected_from_deletion(prod, dev):
    db = prod.one(RDS)
    assert db.protect is True
    assert db.inputs["deletionProtection"] is True and db.inputs["skipFinalSnapshot"] is False
    assert db.inputs["finalSnapshotIdentifier"] == "mlops-prod-mlflow-final"
    assert db.inputs["backupRetentionPeriod"] >= 7 and db.inputs["multiAz"] is True
    bucket = prod.one(BUCKET, "mlflow-artifacts")
    assert bucket.protect is True and bucket.inputs["forceDestroy"] is False
    assert prod.one("aws:kms/key:Key", "mlflow-data").protect is True
    # dev can be torn down
    assert dev.one(RDS).protect is False and dev.one(RDS).inputs["skipFinalSnapshot"] is True
    assert dev.one(BUCKET, "mlflow-artifacts").inputs["forceDestroy"] is True


def test_artifact_bucket_is_kms_encrypted_versioned_private_and_tls_only(dev):
    sse = dev.one("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
                  "mlflow-artifacts").inputs["rules"][0]
    assert sse["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "aws:kms"
    assert sse["applyServerSideEncryptionByDefault"]["kmsMasterKeyId"].startswith("arn:aws:kms:")
    versioning = dev.one("aws:s3/bucketVersioning:BucketVersioning", "mlflow-artifacts").inputs
    assert versioning["versioningConfiguration"]["status"] == "Enabled"
    block = dev.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "mlflow-artifacts").inputs
    assert all(block[k] is True for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls",
                                          "restrictPublicBuckets"))
    policy = json.loads(dev.one("aws:s3/bucketPolicy:BucketPolicy", "mlflow-artifacts").inputs["policy"])
    assert policy["Statement"][0]["Effect"] == "Deny"
    assert policy["Statement"][0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_server_role_trusts_only_the_mlflow_service_account_and_reaches_only_its_bucket(dev):
    role = dev.one("aws:iam/role:Role", "mlflow-server")
    trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]
    assert "system:serviceaccount:mlflow:mlflow" in trust["Condition"]["StringEquals"].values()
    policy = json.loads(dev.one("aws:iam/rolePolicy:RolePolicy", "mlflow-server-inline").inputs["policy"])
    bucket = mock_outputs(dev.one(BUCKET, "mlflow-artifacts"))["bucket"]
    resources = {r for s in policy["Statement"] for r in ([s["Resource"]] if isinstance(s["Resource"], str)
                                                         else s["Resource"])}
    key_arn = mock_outputs(dev.one("aws:kms/key:Key", "mlflow-data"))["arn"]
    assert resources == {f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/artifacts/*", key_arn}
    assert not any("*" in action for s in policy["Statement"]
                   for action in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"]))
    sa = dev.obj("ServiceAccount", "mlflow", "mlflow")
    assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == mock_outputs(role)["arn"]


def test_tracking_server_answers_at_the_url_team_code_uses(dev):
    service = dev.obj("Service", "mlflow", "mlflow")
    assert f"http://{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local" == MLFLOW.url
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"}]
    assert service["spec"]["selector"] == MLFLOW.pod_labels
    pod = dev.obj("Deployment", "mlflow", "mlflow")["spec"]["template"]
    assert pod["metadata"]["labels"] == MLFLOW.pod_labels
    container = pod["spec"]["containers"][0]
    assert container["ports"] == [{"containerPort": MLFLOW.port, "name": "http", "protocol": "TCP"}]
    assert "mlflow.mlflow.svc.cluster.local" in next(
        e["value"] for e in container["env"] if e["name"] == "MLFLOW_SERVER_ALLOWED_HOSTS").split(",")


def test_server_serves_artifacts_reads_the_database_uri_from_the_secret_and_is_probed(dev):
    pod = dev.obj("Deployment", "mlflow", "mlflow")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    bucket = mock_outputs(dev.one(BUCKET, "mlflow-artifacts"))["bucket"]
    assert container["image"] == mlflow.MLFLOW_IMAGE and ":latest" not in container["image"]
    assert container["command"] == ["mlflow", "server"]
    assert "--serve-artifacts" in container["args"]
    assert f"--artifacts-destination=s3://{bucket}/artifacts" in container["args"]
    uri = next(e for e in container["env"] if e["name"] == "MLFLOW_BACKEND_STORE_URI")
    assert uri["valueFrom"]["secretKeyRef"] == {"name": mlflow.DATABASE_SECRET, "key": "MLFLOW_BACKEND_STORE_URI"}
    assert not any("postgresql://" in a for a in container["args"])
    assert container["resources"]["requests"] == {"cpu": "500m", "memory": "1Gi"}
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["path"] == "/health"
    assert pod["serviceAccountName"] == "mlflow" and container["securityContext"]["runAsNonRoot"] is True


def test_two_replicas_and_a_disruption_budget_in_prod(dev, prod):
    assert dev.obj("Deployment", "mlflow", "mlflow")["spec"]["replicas"] == 1
    assert prod.obj("Deployment", "mlflow", "mlflow")["spec"]["replicas"] == 2
    assert prod.obj("PodDisruptionBudget", "mlflow", "mlflow")["spec"]["minAvailable"] == 1
    assert dev.objects("PodDisruptionBudget", "mlflow") == []


def test_network_policies_admit_team_namespaces_only_and_let_out_dns_database_s3_and_sts_only(dev):
    policies = {p["metadata"]["name"]: p["spec"] for p in dev.objects("NetworkPolicy", "mlflow")}
    assert policies["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    ingress = policies["server-ingress"]["ingress"]
    # Team namespaces, and the Job that creates the teams' MLflow users (components/mlflow_auth.py).
    users = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "mlflow-users"}}}
    assert ingress == [{"from": [{"namespaceSelector": {"matchExpressions": [
        {"key": labels.TEAM, "operator": "Exists"}]}}, users], "ports": [{"protocol": "TCP", "port": 5000}]}]
    assert not any("ingress" in spec for name, spec in policies.items() if name != "server-ingress")
    assert policies.pop("users-egress")["egress"] == [{"to": [{"podSelector": {"matchLabels": MLFLOW.pod_labels}}],
                                                      "ports": [{"protocol": "TCP", "port": 5000}]}]
    egress = [rule for spec in policies.values() for rule in spec.get("egress", [])]
    ports = sorted((p["protocol"], p["port"]) for rule in egress for p in rule["ports"])
    assert ports == [("TCP", 53), ("TCP", 443), ("TCP", 443), ("TCP", 5432), ("UDP", 53)]
    cidrs = {peer["ipBlock"]["cidr"] for rule in egress for peer in rule["to"] if "ipBlock" in peer}
    assert "0.0.0.0/0" not in cidrs
    by_port: dict[int, list[set[str]]] = {}
    for rule in egress:
        by_port.setdefault(rule["ports"][0]["port"], []).append({p["ipBlock"]["cidr"] for p in rule["to"]
                                                                 if "ipBlock" in p})
    assert by_port[5432] == [{"10.20.0.0/19", "10.20.32.0/19"}]                  # the private (database) subnets
    s3, sts = by_port[443]
    assert s3 == set(S3_PREFIX_LISTS["us-west-2"][1])                          # the region's S3 prefix list
    assert sts and all(c.endswith("/32") and c.startswith("10.20.") for c in sts)   # the STS endpoint's addresses


def prod_raw() -> dict:
    return {k[len(PREFIX):]: v for k, v in stack_yaml("prod").items() if k.startswith(PREFIX)}


@pytest.mark.parametrize("mlflow_config, expected", [
    ({"replicas": 1}, "mlflow.replicas: must be at least 2 in prod"),
    ({"database": {"multiAz": False}}, "mlflow.database.multiAz: must not be false in prod"),
    ({"database": {"backupRetentionDays": 3}}, "mlflow.database.backupRetentionDays: must be at least 7 in prod"),
    ({"database": {"allocatedStorageGib": 200, "maxAllocatedStorageGib": 100}},
     "mlflow.database.maxAllocatedStorageGib: must be at least allocatedStorageGib"),
    ({"database": {"instanceClass": "m6i.large"}}, "mlflow.database.instanceClass: must match the pattern"),
    ({"replica": 2}, "mlflow.replica: is not a known setting; did you mean 'replicas'?"),
])
def test_mlflow_config_rules_name_their_key(mlflow_config, expected):
    config = prod_raw()
    config["mlflow"] = mlflow_config
    assert_config_problem(config, expected)
