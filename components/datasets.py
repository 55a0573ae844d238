"""Datasets on FSx for Lustre, linked to S3, and the versioned bucket holding every team's DVC remote.

Design: one file system per dataset. Each dataset has its own size, performance class, backup schedule and
readers; a file system per dataset keeps those independent (resizing or deleting one never touches another,
a scratch dataset is not billed like a persistent one, and the S3 link maps the dataset's prefix to the file
system root). FSx bills by provisioned capacity in 1.2/2.4 TiB steps, so several small datasets would cost
less on one shared file system; the platform's data sets are 0.5-5 TB, where the step rounding is small.

Per dataset: the file system (private subnet, LZ4, Lustre security group), its S3 link (a data repository
association with auto-import for PERSISTENT_2, ImportPath + AutoImportPolicy for SCRATCH_2), and one
ReadOnlyMany PersistentVolume per team that may read it, pre-bound to that team's claim. Shared: the Lustre
security group, the FSx CSI driver (EKS add-on, IRSA role), the `fsx-lustre` StorageClass for scratch spaces,
the DVC bucket. The team side (claims, egress NetworkPolicies, IAM grants) is the Team component's, fed with
the `DatasetAccess` records of `access_for(team)` and the `DvcRemote` record.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components import catalog, labels
from components.config import DatasetConfig
from components.endpoints import ClusterAccess, DatasetAccess, DvcRemote
from components.buckets import private_bucket_settings
from components.iam import customer_key, irsa_role

FSX = catalog.fsx()
CSI = FSX["csi"]
STORAGE_CLASS = "fsx-lustre"                      # dynamic SCRATCH_2 file systems for scratch spaces
DATASET_LABEL = f"{labels.PREFIX}/dataset"
DAILY_BACKUP_START = "03:00"                      # UTC, FSx's HH:MM
WEEKLY_MAINTENANCE_START = "7:04:00"              # Sunday 04:00 UTC, FSx's d:HH:MM
DVC_NONCURRENT_DAYS = 90                          # versions removed by `dvc gc` stay recoverable this long
FSX_S3_LINKED_ROLE = "arn:aws:iam::*:role/aws-service-role/s3.data-source.lustre.fsx.amazonaws.com/*"


@dataclass(frozen=True)
class DatasetsArgs:
    datasets: Sequence[DatasetConfig]
    readers: Mapping[str, Sequence[str]]        # dataset name -> teams that may read it (config.dataset_readers())
    access: ClusterAccess
    kubernetes_version: str
    addon_version: str | None                   # cluster.addonVersions["aws-fsx-csi-driver"]; None: EKS default
    protect_data: bool
    is_prod: bool


def claim_name(dataset: str) -> str:
    """The claim a team uses for a dataset, in the team namespace."""
    return f"dataset-{dataset}"


def persistent_volume_name(dataset: str, team: str) -> str:
    return f"dataset-{dataset}-{team}"


def split_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/a/b` -> ("bucket", "a/b/"); the prefix ends with "/" (or is empty for the whole bucket)."""
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


def csi_driver_policy() -> str:
    """The FSx CSI controller's permissions (kubernetes-sigs/aws-fsx-csi-driver docs/install.md), bound to the file
    systems the driver itself creates. The driver names every file system it creates with the tag `CSIVolumeName`
    in the CreateFileSystem request; FSx then authorizes `fsx:TagResource` for those tags with the condition key
    `fsx:CreateAction` set (FSx User Guide, "Grant permission to tag resources during creation"). So:
    - create only with that request tag, and tag only as part of that creation (never an existing file system:
      otherwise the role could tag a dataset's file system and then delete it);
    - update and delete only file systems carrying the tag;
    - an explicit deny on anything carrying the dataset tag `mlops.platform/dataset`, whatever else changes."""
    tag = CSI["volumeNameTag"]
    own = {"StringLike": {f"aws:ResourceTag/{tag}": "*"}}
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "Describe", "Effect": "Allow", "Action": ["fsx:DescribeFileSystems"], "Resource": "*"},
        {"Sid": "CreateTaggedScratchSpaces", "Effect": "Allow", "Action": ["fsx:CreateFileSystem"],
         "Resource": "*", "Condition": {"StringLike": {f"aws:RequestTag/{tag}": "*"}}},
        {"Sid": "TagOnlyWhileCreating", "Effect": "Allow", "Action": ["fsx:TagResource"], "Resource": "*",
         "Condition": {"StringEquals": {"fsx:CreateAction": ["CreateFileSystem"]},
                       "StringLike": {f"aws:RequestTag/{tag}": "*"}}},
        {"Sid": "ManageOnlyItsOwnFileSystems", "Effect": "Allow",
         "Action": ["fsx:UpdateFileSystem", "fsx:DeleteFileSystem"], "Resource": "*", "Condition": own},
        {"Sid": "NeverTouchDatasets", "Effect": "Deny",
         "Action": ["fsx:TagResource", "fsx:UntagResource", "fsx:UpdateFileSystem", "fsx:DeleteFileSystem"],
         "Resource": "*", "Condition": {"Null": {f"aws:ResourceTag/{DATASET_LABEL}": "false"}}},
        {"Sid": "FsxServiceLinkedRole", "Effect": "Allow", "Action": ["iam:CreateServiceLinkedRole"],
         "Resource": "*", "Condition": {"StringLike": {"iam:AWSServiceName": ["fsx.amazonaws.com"]}}},
    ]})


def deployer_policy(locations: Sequence[str]) -> str:
    """What the identity running `pulumi up` needs to link file systems to the dataset buckets (FSx for Lustre
    User Guide, "Adding permissions to use data repositories in Amazon S3"): FSx creates a service-linked role per
    file system and gives it read access to the bucket. Read-only: datasets are imported, never exported."""
    buckets = sorted({split_s3_uri(uri)[0] for uri in locations})
    statements = [
        {"Sid": "FsxS3ServiceLinkedRole", "Effect": "Allow",
         "Action": ["iam:CreateServiceLinkedRole", "iam:AttachRolePolicy", "iam:PutRolePolicy"],
         "Resource": FSX_S3_LINKED_ROLE},
        {"Sid": "LinkFileSystems", "Effect": "Allow",
         "Action": ["fsx:CreateDataRepositoryAssociation", "fsx:UpdateDataRepositoryAssociation",
                    "fsx:DeleteDataRepositoryAssociation", "fsx:DescribeDataRepositoryAssociations"],
         "Resource": "*"},
    ]
    if buckets:
        statements.append({
            "Sid": "ReadDatasetBuckets", "Effect": "Allow", "Action": ["s3:Get*", "s3:List*"],
            "Resource": [arn for b in buckets for arn in (f"arn:aws:s3:::{b}", f"arn:aws:s3:::{b}/*")]})
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


class Datasets(pulumi.ComponentResource):
    file_system_ids: dict[str, pulumi.Output[str]]
    lustre_security_group_id: pulumi.Output[str]
    csi_role_arn: pulumi.Output[str]
    deployer_policy_arn: pulumi.Output[str]
    storage_class_name: str
    dvc_bucket_name: pulumi.Output[str]
    dvc_remote: DvcRemote
    accesses: dict[str, list[DatasetAccess]]      # team -> the datasets it may read

    def __init__(self, name: str, args: DatasetsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:datasets:Datasets", name, None, opts)
        access = args.access
        child = pulumi.ResourceOptions(parent=self)
        k8s_child = pulumi.ResourceOptions(parent=self, provider=access.provider)

        lustre_sg, sg_rules = self._security_group(name, access)
        subnet_ids = access.private_subnet_ids

        csi_role = irsa_role(f"{name}-fsx-csi", access.oidc, CSI["namespace"], CSI["controllerServiceAccount"],
                             self, inline_policy=csi_driver_policy())
        version = args.addon_version or aws.eks.get_addon_version_output(
            addon_name=CSI["addon"], kubernetes_version=args.kubernetes_version, most_recent=False,
            opts=pulumi.InvokeOutputOptions(parent=self),
        ).version
        # Created once nodes run (the Kubernetes provider waits for them), like the cluster's other CSI add-on.
        aws.eks.Addon(
            f"{name}-fsx-csi",
            cluster_name=access.cluster_name,
            addon_name=CSI["addon"],
            addon_version=version,
            service_account_role_arn=csi_role.arn,
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="OVERWRITE",
            opts=pulumi.ResourceOptions(parent=self, depends_on=[access.provider, *access.depends_on]),
        )
        k8s.storage.v1.StorageClass(
            f"{name}-{STORAGE_CLASS}",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=STORAGE_CLASS),
            provisioner=CSI["driver"],
            parameters={
                "subnetId": subnet_ids.apply(lambda ids: ids[0]),
                "securityGroupIds": lustre_sg.id,
                "deploymentType": "SCRATCH_2",
                "dataCompressionType": FSX["dataCompression"],
                "fileSystemTypeVersion": catalog.fsx_deployment_types()["SCRATCH_2"].lustre_version,
            },
            mount_options=["flock"],
            # Scratch spaces are temporary by definition: deleting the claim deletes its file system.
            reclaim_policy="Delete",
            volume_binding_mode="Immediate",
            allow_volume_expansion=True,
            opts=k8s_child,
        )
        self.storage_class_name = STORAGE_CLASS

        self.deployer_policy_arn = aws.iam.Policy(
            f"{name}-deployer",
            description="Attach to the role that runs `pulumi up`: link FSx for Lustre file systems to the dataset "
                        "buckets (FSx's S3 service-linked role, read access to the buckets)",
            policy=deployer_policy([d.location for d in args.datasets]),
            opts=child,
        ).arn

        self.file_system_ids = {}
        self.accesses = {}
        for dataset in args.datasets:
            fs, cidrs = self._file_system(name, dataset, args, subnet_ids, lustre_sg, sg_rules)
            self.file_system_ids[dataset.name] = fs.id
            for team in args.readers.get(dataset.name, ()):
                pv = self._persistent_volume(name, dataset, team, fs, k8s_child)
                self.accesses.setdefault(team, []).append(DatasetAccess(
                    name=dataset.name,
                    persistent_volume_name=pv,
                    capacity_gib=dataset.size_gib,
                    lustre_cidrs=cidrs,
                    s3_uri=dataset.location,
                    claim_name=claim_name(dataset.name),
                    storage_class_name="",
                ))

        self.dvc_remote = self._dvc_bucket(name, args)
        self.dvc_bucket_name = self.dvc_remote.bucket_name
        self.lustre_security_group_id = lustre_sg.id
        self.csi_role_arn = csi_role.arn
        self.register_outputs({
            "file_system_ids": self.file_system_ids,
            "lustre_security_group_id": self.lustre_security_group_id,
            "csi_role_arn": self.csi_role_arn,
            "deployer_policy_arn": self.deployer_policy_arn,
            "storage_class_name": self.storage_class_name,
            "dvc_bucket_name": self.dvc_bucket_name,
        })

    def access_for(self, team: str) -> list[DatasetAccess]:
        """The datasets `team` may read, as its Team component needs them (empty if none)."""
        return list(self.accesses.get(team, []))

    # ---- network ----------------------------------------------------------------------------------

    def _security_group(self, name: str, access: ClusterAccess
                        ) -> tuple[aws.ec2.SecurityGroup, list[pulumi.Resource]]:
        """Lustre traffic (TCP 988, 1018-1023) between the file servers and between them and the cluster's nodes,
        in both directions as FSx documents it; HTTPS to S3 for the data repository link. Nothing else."""
        child = pulumi.ResourceOptions(parent=self)
        sg = aws.ec2.SecurityGroup(
            f"{name}-lustre",
            vpc_id=access.vpc_id,
            description="FSx for Lustre file systems of the ML platform's datasets and scratch spaces",
            tags={"Name": f"{name}-lustre"},
            opts=child,
        )
        rules: list[pulumi.Resource] = []
        nodes = access.cluster_security_group_id
        ingress, egress = aws.vpc.SecurityGroupIngressRule, aws.vpc.SecurityGroupEgressRule
        # (rule, name, the group it is in, the group it admits/reaches, description)
        lustre = [
            (ingress, "lustre-self", sg.id, sg.id, "Lustre between file servers"),
            (ingress, "lustre-nodes", sg.id, nodes, "Lustre from the cluster's nodes"),
            (egress, "lustre-self", sg.id, sg.id, "Lustre between file servers"),
            (egress, "lustre-nodes", sg.id, nodes, "Lustre to the cluster's nodes"),
            # Lustre servers also open connections to their clients: the nodes must admit them.
            (ingress, "nodes-from-lustre", nodes, sg.id, "Lustre from the datasets' file servers"),
        ]
        for ports in FSX["lustrePorts"]:
            span = f"{ports['from']}-{ports['to']}" if ports["from"] != ports["to"] else str(ports["from"])
            rules += [rule(f"{name}-{role}-{span}", security_group_id=group, referenced_security_group_id=peer,
                           description=description, ip_protocol="tcp", from_port=ports["from"], to_port=ports["to"],
                           opts=child)
                      for rule, role, group, peer, description in lustre]
        s3 = aws.ec2.get_managed_prefix_list_output(
            name=aws.get_region_output(opts=pulumi.InvokeOutputOptions(parent=self)).region.apply(
                lambda r: f"com.amazonaws.{r}.s3"),
            opts=pulumi.InvokeOutputOptions(parent=self))
        rules.append(aws.vpc.SecurityGroupEgressRule(
            f"{name}-lustre-s3", security_group_id=sg.id, prefix_list_id=s3.id, ip_protocol="tcp",
            from_port=443, to_port=443, description="S3 (data repository link) through the gateway endpoint",
            opts=child))
        return sg, rules

    # ---- file systems -----------------------------------------------------------------------------

    def _file_system(self, name: str, dataset: DatasetConfig, args: DatasetsArgs,
                     subnet_ids: pulumi.Output[list[str]], sg: aws.ec2.SecurityGroup,
                     sg_rules: list[pulumi.Resource]) -> tuple[aws.fsx.LustreFileSystem, pulumi.Output[list[str]]]:
        kind = dataset.fsx
        backups = dataset.backup_days(args.is_prod)
        subnet_id = subnet_ids.apply(lambda ids, i=dataset.subnet_index: ids[i])
        import_path = kind.s3_link == "importPath"
        fs = aws.fsx.LustreFileSystem(
            f"{name}-{dataset.name}",
            deployment_type=dataset.deployment_type,
            storage_type="SSD",
            storage_capacity=dataset.size_gib,
            per_unit_storage_throughput=dataset.throughput,
            file_system_type_version=kind.lustre_version,
            subnet_ids=subnet_id,
            security_group_ids=[sg.id],
            data_compression_type=FSX["dataCompression"],
            import_path=dataset.location if import_path else None,
            auto_import_policy=(FSX["autoImportPolicy"] if dataset.auto_import else "NONE") if import_path else None,
            automatic_backup_retention_days=backups if kind.backups else None,
            daily_automatic_backup_start_time=DAILY_BACKUP_START if backups else None,
            copy_tags_to_backups=True if backups else None,
            skip_final_backup=not backups if kind.backups else None,
            weekly_maintenance_start_time=WEEKLY_MAINTENANCE_START,
            tags={"Name": f"{name}-{dataset.name}", DATASET_LABEL: dataset.name},
            # FSx checks at creation that its security group admits Lustre from itself.
            opts=pulumi.ResourceOptions(parent=self, depends_on=sg_rules, protect=args.protect_data),
        )
        if not import_path:
            events = FSX["autoImportEvents"] if dataset.auto_import else []
            aws.fsx.DataRepositoryAssociation(
                f"{name}-{dataset.name}",
                file_system_id=fs.id,
                file_system_path="/",                       # the S3 prefix is the file system's root
                data_repository_path=dataset.location.rstrip("/") + "/",
                batch_import_meta_data_on_create=True,      # listings appear at once; contents load lazily
                delete_data_in_filesystem=False,
                s3=aws.fsx.DataRepositoryAssociationS3Args(
                    auto_import_policy=aws.fsx.DataRepositoryAssociationS3AutoImportPolicyArgs(events=events),
                ),                                          # no auto-export: datasets are read-only
                tags={DATASET_LABEL: dataset.name},
                opts=pulumi.ResourceOptions(parent=self, protect=args.protect_data),
            )
        subnet = aws.ec2.get_subnet_output(id=subnet_id, opts=pulumi.InvokeOutputOptions(parent=self))
        return fs, subnet.cidr_block.apply(lambda c: [c])

    def _persistent_volume(self, name: str, dataset: DatasetConfig, team: str, fs: aws.fsx.LustreFileSystem,
                           opts: pulumi.ResourceOptions) -> str:
        pv_name = persistent_volume_name(dataset.name, team)
        k8s.core.v1.PersistentVolume(
            f"{name}-{dataset.name}-{team}",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=pv_name, labels={DATASET_LABEL: dataset.name, labels.TEAM: team}),
            spec=k8s.core.v1.PersistentVolumeSpecArgs(
                capacity={"storage": f"{dataset.size_gib}Gi"},
                access_modes=["ReadOnlyMany"],
                volume_mode="Filesystem",
                # Retain: deleting the claim must never ask the driver to delete the dataset's file system.
                persistent_volume_reclaim_policy="Retain",
                storage_class_name="",
                # Pre-bound: only this team's claim can bind this volume.
                claim_ref=k8s.core.v1.ObjectReferenceArgs(namespace=team, name=claim_name(dataset.name)),
                csi=k8s.core.v1.CSIPersistentVolumeSourceArgs(
                    driver=CSI["driver"],
                    volume_handle=fs.id,
                    read_only=True,
                    volume_attributes={"dnsname": fs.dns_name, "mountname": fs.mount_name},
                ),
            ),
            opts=opts,
        )
        return pv_name

    # ---- DVC --------------------------------------------------------------------------------------

    def _dvc_bucket(self, name: str, args: DatasetsArgs) -> DvcRemote:
        """One bucket, a prefix per team (`s3://<bucket>/<team>/`): versioned, KMS-encrypted, private, TLS only.
        The Team component grants each team's notebook and training roles its own prefix only."""
        data = pulumi.ResourceOptions(parent=self, protect=args.protect_data)
        key = customer_key(f"{name}-dvc", "DVC remotes of the ML platform's teams", data)
        bucket = aws.s3.Bucket(f"{name}-dvc", force_destroy=False, tags={"Name": f"{name}-dvc"}, opts=data)
        private_bucket_settings(f"{name}-dvc", bucket, key.arn, noncurrent_days=DVC_NONCURRENT_DAYS, parent=self)
        return DvcRemote(bucket_name=bucket.bucket, bucket_arn=bucket.arn, kms_key_arn=key.arn)
