"""Datasets on FSx for Lustre: the file systems and their S3 links, the PV/PVC pair per allowed team, prod's backups
and protection, the FSx CSI driver, the DVC bucket, and what each team's roles and NetworkPolicies get from them.
FSx's rules in config: tests/test_datasets_config.py."""

from __future__ import annotations

import ipaddress
import json

import pytest

from components.datasets import DATASET_LABEL, csi_driver_policy, deployer_policy, split_s3_uri
from preview.aws_mocks import _hex
from tests import schemas
from tests.iam_eval import DENY, allowed, evaluate, tagged_request
from tests.conftest import Rendered, run_config, stack_yaml

PREFIX = "mlops-platform:"
FS = "aws:fsx/lustreFileSystem:LustreFileSystem"
DRA = "aws:fsx/dataRepositoryAssociation:DataRepositoryAssociation"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"


def mock_id(typ: str, name: str, prefix: str) -> str:
    """The id the offline mocks give a resource (deterministic, shaped like AWS's)."""
    return prefix + _hex(typ, name)


def private_subnet_id(i: int) -> str:
    return mock_id("aws:ec2/subnet:Subnet", f"network-private-{i}", "subnet-")


LUSTRE_SG = mock_id("aws:ec2/securityGroup:SecurityGroup", "datasets-lustre", "sg-")
CLUSTER_SG = "sg-" + _hex("cluster-eks", "cluster")


# ---------------------------------------------------------------------------------------------------
# What is declared: file systems, S3 links, security group


def file_system(rendered: Rendered, dataset: str):
    return rendered.one(FS, f"datasets-{dataset}")


def test_one_file_system_per_dataset_in_a_private_subnet_with_lz4_and_the_lustre_security_group(dev, prod):
    assert [r.name for r in dev.of_type(FS)] == ["datasets-transactions"]
    assert sorted(r.name for r in prod.of_type(FS)) == ["datasets-clickstream", "datasets-transactions"]
    for rendered, dataset, subnet in [(dev, "transactions", 0), (prod, "transactions", 0), (prod, "clickstream", 1)]:
        fs = file_system(rendered, dataset).inputs
        assert fs["subnetIds"] == private_subnet_id(subnet)
        assert fs["dataCompressionType"] == "LZ4"
        assert fs["securityGroupIds"] == [LUSTRE_SG]
        assert fs["storageType"] == "SSD"
    prod_tx = file_system(prod, "transactions").inputs
    assert (prod_tx["deploymentType"], prod_tx["storageCapacity"], prod_tx["perUnitStorageThroughput"]) == \
        ("PERSISTENT_2", 4800, 250)
    dev_tx = file_system(dev, "transactions").inputs
    assert (dev_tx["deploymentType"], dev_tx["storageCapacity"]) == ("SCRATCH_2", 1200)
    assert "perUnitStorageThroughput" not in dev_tx


def declared_here(rendered: Rendered, typ: str) -> list:
    """The resources of a type that the Datasets component declares (other components add their own rules)."""
    return [r for r in rendered.of_type(typ) if "::mlops:datasets:Datasets$" in r.urn]


def test_lustre_security_group_admits_lustre_ports_from_the_nodes_and_itself_only(dev):
    ingress = [r.inputs for r in dev.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
               if r.inputs["securityGroupId"] == LUSTRE_SG]
    spans = {(r["fromPort"], r["toPort"]) for r in ingress}
    assert spans == {(988, 988), (1018, 1023)}
    assert all(r["ipProtocol"] == "tcp" and "cidrIpv4" not in r for r in ingress)
    assert {(r["fromPort"], r["referencedSecurityGroupId"]) for r in ingress} == \
        {(p, sg) for p in (988, 1018) for sg in (LUSTRE_SG, CLUSTER_SG)}
    # Lustre servers connect back to clients: the nodes admit the file servers on the same ports.
    back = [r.inputs for r in dev.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
            if r.inputs["securityGroupId"] == CLUSTER_SG and r.inputs.get("referencedSecurityGroupId") == LUSTRE_SG]
    assert {(r["fromPort"], r["toPort"]) for r in back} == {(988, 988), (1018, 1023)}
    egress = [r.inputs for r in declared_here(dev, "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")]
    assert all(r["securityGroupId"] == LUSTRE_SG and "cidrIpv4" not in r for r in egress)
    assert {r.get("prefixListId") for r in egress} == {None, "pl-68a54001"}   # only S3's prefix list, on 443
    # FSx checks the group admits Lustre from itself when it creates the file system: rules come first.
    fs = file_system(dev, "transactions")
    rule_urns = {r.urn for typ in ("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
                                   "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")
                 for r in declared_here(dev, typ)}
    assert len(rule_urns) == 11
    assert rule_urns <= set(fs.dependencies)


def test_persistent_2_is_linked_by_a_data_repository_association_with_auto_import(prod):
    for dataset, location in [("transactions", "s3://acme-ml-datasets-prod/transactions/2026"),
                              ("clickstream", "s3://acme-ml-datasets-prod/clickstream")]:
        dra = prod.one(DRA, f"datasets-{dataset}").inputs
        assert dra["fileSystemId"] == mock_id(FS, f"datasets-{dataset}", "fs-")
        assert dra["dataRepositoryPath"] == location + "/"
        assert dra["fileSystemPath"] == "/"
        assert dra["s3"] == {"autoImportPolicy": {"events": ["NEW", "CHANGED", "DELETED"]}}  # never auto-export
        assert dra["deleteDataInFilesystem"] is False
        fs = file_system(prod, dataset).inputs
        assert "importPath" not in fs and "autoImportPolicy" not in fs   # FSx rejects these on PERSISTENT_2


def test_scratch_2_is_linked_by_its_import_path(dev):
    assert dev.of_type(DRA) == []
    fs = file_system(dev, "transactions").inputs
    assert fs["importPath"] == "s3://acme-ml-datasets-dev/transactions/2026"
    assert fs["autoImportPolicy"] == "NEW_CHANGED_DELETED"


def test_prod_backs_up_and_protects_persistent_file_systems_dev_does_not(dev, prod):
    for dataset, days in [("transactions", 14), ("clickstream", 7)]:
        fs = file_system(prod, dataset)
        assert fs.protect is True
        assert fs.inputs["automaticBackupRetentionDays"] == days
        assert fs.inputs["dailyAutomaticBackupStartTime"] == "03:00"
        assert fs.inputs["copyTagsToBackups"] is True and fs.inputs["skipFinalBackup"] is False
        assert prod.one(DRA, f"datasets-{dataset}").protect is True
    fs = file_system(dev, "transactions")
    assert fs.protect is False
    assert not {"automaticBackupRetentionDays", "skipFinalBackup"} & set(fs.inputs)


# ---------------------------------------------------------------------------------------------------
# In the cluster: PV per (dataset, team), the team's claim, the CSI driver, the scratch StorageClass


def dataset_pvs(rendered: Rendered) -> dict[tuple[str, str], dict]:
    return {(pv["metadata"]["labels"]["mlops.platform/dataset"], pv["metadata"]["labels"]["mlops.platform/team"]): pv
            for pv in rendered.objects("PersistentVolume")
            if "mlops.platform/dataset" in (pv["metadata"].get("labels") or {})}


def test_a_pv_pvc_pair_per_allowed_team_and_none_for_other_teams(dev, prod):
    expected = {
        dev: {("transactions", "risk-lab")},
        prod: {("transactions", "risk-lab"), ("clickstream", "reco-lab"),
               ("clickstream", "forecast-lab")},
    }
    for rendered, pairs in expected.items():
        pvs = dataset_pvs(rendered)
        assert set(pvs) == pairs
        claims = {(c["metadata"]["name"], c["metadata"]["namespace"]): c
                  for c in rendered.objects("PersistentVolumeClaim") if c["metadata"]["name"].startswith("dataset-")}
        assert len(claims) == len(pairs)
        for (dataset, team), pv in pvs.items():
            claim = claims[(f"dataset-{dataset}", team)]
            # The PV is pre-bound to exactly this claim, and the claim names exactly this PV.
            assert pv["spec"]["claimRef"] == {"namespace": team, "name": f"dataset-{dataset}"}
            assert claim["spec"]["volumeName"] == pv["metadata"]["name"]
            assert pv["spec"]["accessModes"] == claim["spec"]["accessModes"] == ["ReadOnlyMany"]
            assert pv["spec"]["storageClassName"] == claim["spec"]["storageClassName"] == ""
            assert pv["spec"]["capacity"]["storage"] == claim["spec"]["resources"]["requests"]["storage"]
    # Teams that may not read a dataset have no claim and no volume for it.
    assert not dev.objects("PersistentVolumeClaim", "reco-lab")
    assert [c["metadata"]["name"] for c in prod.objects("PersistentVolumeClaim", "forecast-lab")] == \
        ["dataset-clickstream"]
    assert [c["metadata"]["name"] for c in prod.objects("PersistentVolumeClaim", "risk-lab")] == \
        ["dataset-transactions"]


def test_dataset_volumes_mount_the_file_system_read_only_and_never_delete_it(prod):
    for (dataset, _team), pv in dataset_pvs(prod).items():
        fs_id = mock_id(FS, f"datasets-{dataset}", "fs-")
        csi = pv["spec"]["csi"]
        assert csi["driver"] == "fsx.csi.aws.com" and csi["readOnly"] is True
        assert csi["volumeHandle"] == fs_id
        assert csi["volumeAttributes"]["dnsname"] == f"{fs_id}.fsx.us-east-1.amazonaws.com"
        assert csi["volumeAttributes"]["mountname"]
        assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"


def test_fsx_csi_driver_add_on_with_an_irsa_role_that_cannot_delete_dataset_file_systems(dev):
    addon = next(r.inputs for r in dev.of_type("aws:eks/addon:Addon") if r.inputs["addonName"] == "aws-fsx-csi-driver")
    role = dev.one("aws:iam/role:Role", "datasets-fsx-csi")
    assert addon["serviceAccountRoleArn"].split("/")[-1].startswith("datasets-fsx-csi-")
    trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert len(trust) == 1
    assert "system:serviceaccount:kube-system:fsx-csi-controller-sa" in trust[0]["Condition"]["StringEquals"].values()
    policy = json.loads(dev.one(ROLE_POLICY, "datasets-fsx-csi-inline").inputs["policy"])
    by_action = {a: s for s in policy["Statement"] if s["Effect"] == "Allow"
                 for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert by_action["fsx:DeleteFileSystem"]["Condition"] == {"StringLike": {"aws:ResourceTag/CSIVolumeName": "*"}}
    assert by_action["fsx:CreateFileSystem"]["Condition"] == {"StringLike": {"aws:RequestTag/CSIVolumeName": "*"}}
    assert "CSIVolumeName" not in file_system(dev, "transactions").inputs["tags"]
    assert not any(a.endswith("*") for a in by_action)  # no wildcard actions
    # The add-on waits for the Kubernetes provider, that is for running nodes.
    addon_reg = next(r for r in dev.of_type("aws:eks/addon:Addon") if r.inputs["addonName"] == "aws-fsx-csi-driver")
    assert dev.one("pulumi:providers:kubernetes").urn in addon_reg.dependencies


FS_ARN = "arn:aws:fsx:us-east-1:111122223333:file-system/fs-{}"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_csi_role_can_never_tag_update_or_delete_a_dataset_file_system(stack, request):
    """Evaluated (tests/iam_eval.py) with the role's rendered policy and every dataset file system's rendered tags:
    the driver creates, tags at creation and deletes its own scratch file systems, and nothing else."""
    rendered = request.getfixturevalue(stack)
    policy = [rendered.one(ROLE_POLICY, "datasets-fsx-csi-inline").inputs["policy"]]
    own = {"CSIVolumeName": "pvc-0b1d"}
    # The driver's own path: create with its tag, FSx's tag-on-create check, then update and delete.
    assert allowed(policy, tagged_request("fsx:CreateFileSystem", "*", request_tags=own))
    assert allowed(policy, tagged_request("fsx:TagResource", FS_ARN.format("own"), request_tags=own,
                                          fsx__CreateAction="CreateFileSystem"))
    for action in ("fsx:UpdateFileSystem", "fsx:DeleteFileSystem"):
        assert allowed(policy, tagged_request(action, FS_ARN.format("own"), resource_tags=own))
    # Not its own: a file system it did not create (no tag), or created untagged.
    assert not allowed(policy, tagged_request("fsx:DeleteFileSystem", FS_ARN.format("other"), {"Name": "x"}))
    assert not allowed(policy, tagged_request("fsx:CreateFileSystem", "*"))
    datasets = rendered.of_type(FS)
    assert datasets
    for fs in datasets:
        tags, arn = fs.inputs["tags"], FS_ARN.format(fs.name)
        for action in ("fsx:DeleteFileSystem", "fsx:UpdateFileSystem", "fsx:UntagResource"):
            assert not allowed(policy, tagged_request(action, arn, tags)), (fs.name, action)
        # Tagging it as the driver's (the first step of the old escalation) is refused, outside creation or not.
        assert not allowed(policy, tagged_request("fsx:TagResource", arn, tags, own))
        assert not allowed(policy, tagged_request("fsx:TagResource", arn, tags, own,
                                                  fsx__CreateAction="CreateFileSystem"))
        # Even if the tag were there (set by someone else), the dataset tag keeps it out of reach.
        assert evaluate(policy, tagged_request("fsx:DeleteFileSystem", arn, {**tags, **own})) == DENY


def test_the_old_csi_policy_would_have_failed_the_escalation_check():
    """Mutation: tagging allowed on the request tag alone (the policy before the fix) lets the role tag a dataset's
    file system as its own and then delete it; the evaluator sees both steps."""
    old = json.loads(csi_driver_policy())
    for s in old["Statement"]:
        if s["Sid"] == "TagOnlyWhileCreating":
            del s["Condition"]["StringEquals"]
    old["Statement"] = [s for s in old["Statement"] if s["Sid"] != "NeverTouchDatasets"]
    arn, dataset, own = FS_ARN.format("dataset"), {DATASET_LABEL: "transactions"}, {"CSIVolumeName": "x"}
    assert allowed([old], tagged_request("fsx:TagResource", arn, dataset, own))
    assert allowed([old], tagged_request("fsx:DeleteFileSystem", arn, {**dataset, **own}))
    assert not allowed([csi_driver_policy()], tagged_request("fsx:TagResource", arn, dataset, own))


def test_scratch_storage_class_provisions_scratch_2_in_a_private_subnet(dev):
    sc = dev.obj("StorageClass", "fsx-lustre")
    assert sc["provisioner"] == "fsx.csi.aws.com"
    assert sc["parameters"] == {"subnetId": private_subnet_id(0), "securityGroupIds": LUSTRE_SG,
                                "deploymentType": "SCRATCH_2", "dataCompressionType": "LZ4",
                                "fileSystemTypeVersion": "2.12"}
    assert sc["reclaimPolicy"] == "Delete" and sc["allowVolumeExpansion"] is True
    assert "storageclass.kubernetes.io/is-default-class" not in (sc["metadata"].get("annotations") or {})


def test_pv_pvc_and_storage_class_validate_against_the_kubernetes_schema(dev, prod, schemas_dir):
    objects = [o for r in (dev, prod) for kind in ("PersistentVolume", "PersistentVolumeClaim", "StorageClass")
               for o in r.objects(kind)]
    assert len(objects) >= 10
    assert [p for o in objects for p in schemas.errors(o, schemas_dir)] == []


# ---------------------------------------------------------------------------------------------------
# DVC


def test_dvc_bucket_is_versioned_kms_encrypted_private_tls_only_and_protected_in_prod(dev, prod):
    for rendered, protected in [(dev, False), (prod, True)]:
        bucket = rendered.one("aws:s3/bucket:Bucket", "datasets-dvc")
        key = rendered.one("aws:kms/key:Key", "datasets-dvc")
        assert bucket.protect is protected and key.protect is protected
        assert bucket.inputs["forceDestroy"] is False and key.inputs["enableKeyRotation"] is True
        versioning = rendered.one("aws:s3/bucketVersioning:BucketVersioning", "datasets-dvc").inputs
        assert versioning["versioningConfiguration"]["status"] == "Enabled"
        [rule] = rendered.one("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
                              "datasets-dvc").inputs["rules"]
        sse = rule["applyServerSideEncryptionByDefault"]
        assert sse["sseAlgorithm"] == "aws:kms" and sse["kmsMasterKeyId"].startswith("arn:aws:kms:")
        block = rendered.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "datasets-dvc").inputs
        assert all(block[k] is True for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls",
                                              "restrictPublicBuckets"))
        bucket_policy = rendered.one("aws:s3/bucketPolicy:BucketPolicy", "datasets-dvc").inputs["policy"]
        [deny] = json.loads(bucket_policy)["Statement"]
        assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert prod.run.outputs["dvcBucket"].startswith("datasets-dvc-")


# ---------------------------------------------------------------------------------------------------
# The team side (Team component in components/tenancy.py, fed with access_for(team) and the DvcRemote)


def team_policy(rendered: Rendered, team: str, account: str) -> dict | None:
    found = [r for r in rendered.of_type(ROLE_POLICY) if r.name == f"team-{team}-{account}-inline"]
    return json.loads(found[0].inputs["policy"]) if found else None


def resources(policy: dict) -> list[str]:
    return [res for s in policy["Statement"] for res in ([s["Resource"]] if isinstance(s["Resource"], str)
                                                          else s["Resource"])]


def test_team_roles_grant_their_own_dvc_prefix_and_datasets_and_no_other_teams(prod):
    bucket = prod.run.outputs["dvcBucket"]
    readable = {"risk-lab": {"acme-ml-datasets-prod/transactions/2026"},
                "reco-lab": {"acme-ml-datasets-prod/clickstream"},
                "forecast-lab": {"acme-ml-datasets-prod/clickstream"}}
    all_prefixes = set().union(*readable.values())
    for team, mine in readable.items():
        for account in ("notebook", "training"):
            policy = team_policy(prod, team, account)
            arns = resources(policy)
            dvc_objects = [a for a in arns if a.startswith(f"arn:aws:s3:::{bucket}/")]
            assert dvc_objects == [f"arn:aws:s3:::{bucket}/{team}/*"], (team, account, dvc_objects)
            prefixes = {p for p in all_prefixes if any(a.startswith(f"arn:aws:s3:::{p}") for a in arns)}
            assert prefixes == mine, (team, account)
            listing = [s for s in policy["Statement"] if s["Action"] == "s3:ListBucket"
                       and s["Resource"] == f"arn:aws:s3:::{bucket}"]
            assert listing
            assert all(prefix.startswith(team) for prefix in listing[0]["Condition"]["StringLike"]["s3:prefix"])
            assert any(s["Action"] == ["kms:Decrypt", "kms:GenerateDataKey"] for s in policy["Statement"])
            others = set(readable) - {team}
            assert not any(f"/{other}/" in a for a in arns for other in others)
        serving = team_policy(prod, team, "serving")
        assert serving is None or not any(bucket in a or "datasets" in a for a in resources(serving))


def test_team_lustre_egress_reaches_only_the_subnets_of_its_datasets(dev, prod):
    def lustre_cidrs(rendered: Rendered, team: str) -> set[str]:
        policy = rendered.obj("NetworkPolicy", "training-egress", team)
        return {peer["ipBlock"]["cidr"] for rule in policy["spec"]["egress"]
                if any(p.get("port") == 988 for p in rule.get("ports", [])) for peer in rule["to"]}
    private = [str(c) for c in ipaddress.ip_network("10.40.0.0/16").subnets(prefixlen_diff=3)][:3]
    assert lustre_cidrs(prod, "risk-lab") == {private[0]}     # transactions: subnetIndex 0
    assert lustre_cidrs(prod, "forecast-lab") == {private[1]}         # clickstream: subnetIndex 1
    assert lustre_cidrs(dev, "reco-lab") == set()


# ---------------------------------------------------------------------------------------------------
# Variations: a team naming a dataset, auto-import off, a persistent dataset in dev, a pinned add-on


@pytest.fixture(scope="module")
def variant() -> Rendered:
    config = stack_yaml("dev")
    config[PREFIX + "teams"][1]["datasets"] = ["transactions"]           # granted from the team's side
    config[PREFIX + "datasets"].append({"name": "images", "location": "s3://acme-ml-datasets-dev/images",
                                        "sizeGiB": 2400, "deploymentType": "PERSISTENT_2", "autoImport": False,
                                        "teams": ["reco-lab"]})
    config[PREFIX + "cluster"]["addonVersions"] = {"aws-fsx-csi-driver": "v1.7.0-eksbuild.1"}
    return Rendered(run_config(config))


def test_a_team_listing_a_dataset_gets_its_pv_pvc_pair(variant):
    assert ("transactions", "reco-lab") in dataset_pvs(variant)
    claim = variant.obj("PersistentVolumeClaim", "dataset-transactions", "reco-lab")
    assert claim["spec"]["volumeName"] == "dataset-transactions-reco-lab"


def test_auto_import_off_and_no_backups_for_a_persistent_dataset_in_dev(variant):
    assert variant.one(DRA, "datasets-images").inputs["s3"] == {"autoImportPolicy": {"events": []}}
    fs = variant.one(FS, "datasets-images")
    assert fs.protect is False
    assert fs.inputs["automaticBackupRetentionDays"] == 0 and fs.inputs["skipFinalBackup"] is True
    assert fs.inputs["perUnitStorageThroughput"] == 250


def test_the_fsx_csi_add_on_version_is_pinned_from_config(variant):
    addon = next(r.inputs for r in variant.of_type("aws:eks/addon:Addon")
                 if r.inputs["addonName"] == "aws-fsx-csi-driver")
    assert addon["addonVersion"] == "v1.7.0-eksbuild.1"


def test_no_datasets_still_gives_every_team_a_dvc_remote_and_no_volumes():
    config = stack_yaml("dev")
    del config[PREFIX + "datasets"]
    rendered = Rendered(run_config(config))
    assert rendered.of_type(FS) == [] and dataset_pvs(rendered) == {}
    assert rendered.obj("StorageClass", "fsx-lustre")
    policy = team_policy(rendered, "reco-lab", "training")
    assert any(a.endswith("/reco-lab/*") for a in resources(policy))


# ---------------------------------------------------------------------------------------------------
# Pure helpers


def test_deployer_policy_reads_the_dataset_buckets_only():
    policy = json.loads(deployer_policy(["s3://b1/x", "s3://b1/y/z", "s3://b2"]))
    read = next(s for s in policy["Statement"] if s["Sid"] == "ReadDatasetBuckets")
    assert read["Action"] == ["s3:Get*", "s3:List*"]
    assert read["Resource"] == ["arn:aws:s3:::b1", "arn:aws:s3:::b1/*", "arn:aws:s3:::b2", "arn:aws:s3:::b2/*"]
    assert not any("s3:PutObject" in json.dumps(s) for s in policy["Statement"])
    assert split_s3_uri("s3://b1/y/z") == ("b1", "y/z/") and split_s3_uri("s3://b2") == ("b2", "")
    assert "fsx:DeleteFileSystem" in csi_driver_policy()
