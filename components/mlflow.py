"""MLflow tracking server with model registry: RDS PostgreSQL backend, S3 artifacts served through the server.

AWS: a KMS key for MLflow's data, an S3 artifact bucket (KMS-encrypted, versioned, public access blocked, TLS only),
an RDS PostgreSQL instance in the private subnets (encrypted, reachable on 5432 from the cluster security group
only; backups, Multi-AZ, deletion protection and a final snapshot in prod), its password from
`random.RandomPassword`, and an IRSA role that can use the artifact bucket and nothing else.

Kubernetes (namespace `mlflow`, as `endpoints.MLFLOW` promises): the server's ServiceAccount, a Secret with the
database URI, a Deployment running `mlflow server --serve-artifacts` (clients need no S3 credentials), a Service
`mlflow` (port 80 -> 5000: `http://mlflow.mlflow.svc.cluster.local`), a PodDisruptionBudget and NetworkPolicies:
ingress only from team namespaces, egress only to DNS, the database subnets, S3 and the STS endpoint.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pulumi_random as random

from components import catalog, labels
from components import mlflow_auth as auth
from components.config import MlflowConfig
from components.endpoints import MLFLOW, ClusterAccess, ServiceEndpoint
from components.buckets import private_bucket_settings
from components.iam import customer_key, irsa_role
from components.network import lookup_subnet_cidrs

# Pinned in components/data/versions.yaml. RDS: only the major version is pinned; AWS applies minor (security)
# releases in the maintenance window, which the provider does not show as drift when only the major is given.
MLFLOW_IMAGE = catalog.image("mlflow")
POSTGRES_MAJOR_VERSION = catalog.versions()["components"]["postgres-major"]

SERVICE_NAME = "mlflow"               # the Service clients reach: http://mlflow.<namespace>.svc.cluster.local
SERVICE_ACCOUNT = "mlflow"
DATABASE_SECRET = "mlflow-database"
WEBHOOK_KEY_ENV = "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY"
DATABASE_NAME = "mlflow"
DATABASE_USER = "mlflow"
DATABASE_PORT = 5432
ARTIFACTS_PREFIX = "artifacts"
HTTPS_PORT = 443
DNS = {"namespace": "kube-system", "pod_labels": {"k8s-app": "kube-dns"}, "port": 53}
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
RESOURCES = {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}
# The server's own users are the team namespaces; it runs nothing of theirs, so `restricted` holds.
POD_SECURITY_LABELS = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn", "audit")}


@dataclass(frozen=True)
class MlflowArgs:
    config: MlflowConfig
    access: ClusterAccess
    cluster_name: str
    is_prod: bool
    protect_data: bool
    # The STS interface endpoint's addresses (Network.sts_endpoint_cidrs): IRSA exchanges its token there.
    sts_cidrs: pulumi.Input[list[str]] = field(default_factory=list)
    endpoint: ServiceEndpoint = field(default=MLFLOW)
    teams: list[str] = field(default_factory=list)      # one MLflow user per team (components/mlflow_auth.py)
    # The registered models of registry-mode rollouts: the rollout service's MLflow user gets EDIT on these only.
    rollout_models: list[str] = field(default_factory=list)


class Mlflow(pulumi.ComponentResource):
    tracking_url: str
    namespace: str
    namespace_resource: pulumi.Resource
    artifact_bucket_name: pulumi.Output[str]
    artifact_bucket_arn: pulumi.Output[str]
    kms_key_arn: pulumi.Output[str]
    database_address: pulumi.Output[str]
    server_role_arn: pulumi.Output[str]
    replicas: int
    team_passwords: dict[str, pulumi.Output[str]]      # team -> its MLflow user's password (secret)

    def __init__(self, name: str, args: MlflowArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mlops:mlflow:Mlflow", name, None, opts)
        cfg, access, endpoint = args.config, args.access, args.endpoint
        ns = endpoint.namespace
        child = pulumi.ResourceOptions(parent=self)
        data = pulumi.ResourceOptions(parent=self, protect=args.protect_data)
        invoke = pulumi.InvokeOutputOptions(parent=self)
        region = aws.get_region_output(opts=invoke).region
        tags = {"mlops.platform/component": "mlflow", "mlops.platform/cluster": args.cluster_name}

        # ---- S3 artifact store
        key = customer_key(f"{name}-data", f"MLflow artifacts and database of EKS cluster {args.cluster_name}", data,
                           tags=tags)
        bucket = aws.s3.Bucket(f"{name}-artifacts", force_destroy=not args.protect_data, tags=tags, opts=data)
        private_bucket_settings(f"{name}-artifacts", bucket, key.arn, noncurrent_days=90, parent=self)

        # ---- RDS PostgreSQL in the private subnets, reachable from the cluster's security group only
        password = random.RandomPassword(f"{name}-database", length=40, special=False, opts=child)
        subnet_group = aws.rds.SubnetGroup(
            f"{name}-database", name=f"{args.cluster_name}-mlflow", subnet_ids=access.private_subnet_ids,
            description=f"Private subnets of MLflow's database ({args.cluster_name})", tags=tags, opts=child)
        security_group = aws.ec2.SecurityGroup(
            f"{name}-database", vpc_id=access.vpc_id, name=f"{args.cluster_name}-mlflow-database",
            description=f"MLflow's PostgreSQL: {DATABASE_PORT} from the EKS cluster security group only",
            tags=tags, opts=child)
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-database-from-cluster", security_group_id=security_group.id, ip_protocol="tcp",
            from_port=DATABASE_PORT, to_port=DATABASE_PORT,
            referenced_security_group_id=access.cluster_security_group_id,
            description="PostgreSQL from the cluster's pods and nodes", opts=child)
        db_cfg = cfg.database
        multi_az = args.is_prod if db_cfg.multi_az is None else db_cfg.multi_az
        identifier = f"{args.cluster_name}-mlflow"
        database = aws.rds.Instance(
            f"{name}-database",
            identifier=identifier,
            engine="postgres",
            engine_version=POSTGRES_MAJOR_VERSION,
            auto_minor_version_upgrade=True,
            instance_class=db_cfg.instance_class,
            allocated_storage=db_cfg.allocated_storage_gib,
            max_allocated_storage=db_cfg.max_allocated_storage_gib,
            storage_type="gp3",
            storage_encrypted=True,
            kms_key_id=key.arn,
            db_name=DATABASE_NAME,
            username=DATABASE_USER,
            password=pulumi.Output.secret(password.result),
            port=DATABASE_PORT,
            db_subnet_group_name=subnet_group.name,
            vpc_security_group_ids=[security_group.id],
            publicly_accessible=False,
            multi_az=multi_az,
            backup_retention_period=db_cfg.backup_retention_days,
            copy_tags_to_snapshot=True,
            deletion_protection=args.protect_data,
            skip_final_snapshot=not args.protect_data,
            final_snapshot_identifier=f"{identifier}-final" if args.protect_data else None,
            enabled_cloudwatch_logs_exports=["postgresql", "upgrade"],
            tags=tags,
            opts=data,
        )

        # ---- IRSA: the server's service account may use the artifact bucket (and its key), nothing else
        role = irsa_role(f"{name}-server", access.oidc, ns, SERVICE_ACCOUNT, self,
                         inline_policy=pulumi.Output.all(bucket.arn, key.arn).apply(lambda a: artifact_policy(*a)))

        # ---- Kubernetes
        provider = access.provider
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=provider, depends_on=list(access.depends_on))
        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=ns, labels=dict(POD_SECURITY_LABELS)),
            opts=k8s_opts)
        in_ns = pulumi.ResourceOptions(parent=self, provider=provider, depends_on=[namespace])
        pod_labels = dict(endpoint.pod_labels)

        def meta(object_name: str) -> k8s.meta.v1.ObjectMetaArgs:
            return k8s.meta.v1.ObjectMetaArgs(name=object_name, namespace=ns, labels=pod_labels)

        service_account = k8s.core.v1.ServiceAccount(
            f"{name}-service-account",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=SERVICE_ACCOUNT, namespace=ns, labels=pod_labels,
                                                annotations={"eks.amazonaws.com/role-arn": role.arn}),
            automount_service_account_token=False,   # the server never calls the Kubernetes API
            opts=in_ns)
        backend_uri = pulumi.Output.secret(pulumi.Output.all(password.result, database.address).apply(
            lambda a: backend_store_uri(a[0], a[1])))
        # MLflow encrypts webhook secrets in its database with this Fernet key (32 bytes, URL-safe base64); without
        # it each server process picks a random key and webhooks stop verifying after a restart.
        webhook_key = random.RandomPassword(f"{name}-webhook-key", length=43, special=False, opts=child)
        secret = k8s.core.v1.Secret(
            f"{name}-database-secret", metadata=meta(DATABASE_SECRET), type="Opaque",
            string_data={"MLFLOW_BACKEND_STORE_URI": backend_uri,
                         WEBHOOK_KEY_ENV: pulumi.Output.secret(webhook_key.result.apply(lambda k: k + "="))},
            opts=in_ns)

        # ---- authentication: the basic-auth app's config and admin, one user per team, the rollout service's user
        users = auth.declare_secrets(name, meta, backend_uri, args.teams, args.rollout_models, endpoint.url,
                                     child, in_ns)
        self.team_passwords = users.team_passwords

        self.replicas = cfg.replicas or (2 if args.is_prod else 1)
        server = k8s.apps.v1.Deployment(
            f"{name}-server",
            metadata=meta(SERVICE_NAME),
            spec=deployment_spec(self.replicas, pod_labels, bucket.bucket, region, args.is_prod, ns),
            opts=pulumi.ResourceOptions(parent=self, provider=provider,
                                        depends_on=[service_account, secret, users.auth_secret, database]))
        if args.teams or args.rollout_models:
            k8s.batch.v1.Job(
                f"{name}-team-users",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=auth.bootstrap_job_name(args.teams, MLFLOW_IMAGE, args.rollout_models),
                    namespace=ns, labels=dict(auth.BOOTSTRAP_LABELS)),
                spec=auth.bootstrap_job_spec(args.teams, MLFLOW_IMAGE, f"http://{SERVICE_NAME}.{ns}.svc",
                                             args.rollout_models),
                opts=pulumi.ResourceOptions(parent=self, provider=provider, depends_on=[server, *users.user_secrets]))
        k8s.core.v1.Service(
            f"{name}-service",
            metadata=meta(SERVICE_NAME),
            spec=k8s.core.v1.ServiceSpecArgs(
                selector=pod_labels,
                ports=[k8s.core.v1.ServicePortArgs(name="http", port=80, target_port="http", protocol="TCP")]),
            opts=in_ns)
        if self.replicas > 1:
            k8s.policy.v1.PodDisruptionBudget(
                f"{name}-server",
                metadata=meta(SERVICE_NAME),
                spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
                    min_available=1, selector=k8s.meta.v1.LabelSelectorArgs(match_labels=pod_labels)),
                opts=in_ns)

        # ---- NetworkPolicies: in from team namespaces; out to DNS, the database subnets and S3 only
        database_cidrs = lookup_subnet_cidrs(access.private_subnet_ids, invoke)
        s3_cidrs = aws.ec2.get_managed_prefix_list_output(
            name=region.apply(lambda r: f"com.amazonaws.{r}.s3"), opts=invoke,
        ).entries.apply(lambda entries: sorted(e.cidr for e in entries))
        specs = network_policy_specs(pod_labels, endpoint.port, database_cidrs, s3_cidrs, args.sts_cidrs)
        for policy_name, spec in specs.items():
            k8s.networking.v1.NetworkPolicy(f"{name}-netpol-{policy_name}", metadata=meta(policy_name), spec=spec,
                                            opts=in_ns)

        self.tracking_url = endpoint.url
        self.namespace = ns
        self.namespace_resource = namespace
        self.artifact_bucket_name = bucket.bucket
        self.artifact_bucket_arn = bucket.arn
        self.kms_key_arn = key.arn
        self.database_address = database.address
        self.server_role_arn = role.arn
        self.register_outputs({
            "tracking_url": self.tracking_url,
            "namespace": self.namespace,
            "artifact_bucket_name": self.artifact_bucket_name,
            "artifact_bucket_arn": self.artifact_bucket_arn,
            "kms_key_arn": self.kms_key_arn,
            "database_address": self.database_address,
            "server_role_arn": self.server_role_arn,
            "replicas": self.replicas,
            "team_passwords": self.team_passwords,
        })


def backend_store_uri(password: str, host: str) -> str:
    """SQLAlchemy URI of the tracking store; RDS PostgreSQL 15+ only accepts TLS (`rds.force_ssl`)."""
    return f"postgresql://{DATABASE_USER}:{password}@{host}:{DATABASE_PORT}/{DATABASE_NAME}?sslmode=require"


def artifact_policy(bucket_arn: str, key_arn: str) -> str:
    """Read, write and delete artifacts under the bucket's artifact prefix; the key to encrypt them."""
    prefix = ARTIFACTS_PREFIX
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "ArtifactObjects", "Effect": "Allow",
         "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
         "Resource": f"{bucket_arn}/{prefix}/*"},
        {"Sid": "ArtifactListing", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket_arn,
         "Condition": {"StringLike": {"s3:prefix": [prefix, f"{prefix}/*"]}}},
        {"Sid": "ArtifactKey", "Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
         "Resource": key_arn},
    ]})


def allowed_hosts(namespace: str) -> str:
    """Host headers the server accepts (MLflow >= 3.5 rejects others): its Service names, and localhost for probes."""
    names = [SERVICE_NAME, f"{SERVICE_NAME}.{namespace}", f"{SERVICE_NAME}.{namespace}.svc",
             f"{SERVICE_NAME}.{namespace}.svc.cluster.local"]
    return ",".join([*names, *(f"{n}:80" for n in names), "localhost", "localhost:5000"])


def deployment_spec(replicas: int, pod_labels: dict[str, str], bucket: pulumi.Input[str], region: pulumi.Input[str],
                    is_prod: bool, namespace: str) -> k8s.apps.v1.DeploymentSpecArgs:
    probe_headers = [k8s.core.v1.HTTPHeaderArgs(name="Host", value="localhost")]

    def probe(period: int, failures: int) -> k8s.core.v1.ProbeArgs:
        return k8s.core.v1.ProbeArgs(
            http_get=k8s.core.v1.HTTPGetActionArgs(path="/health", port="http", http_headers=probe_headers),
            period_seconds=period, timeout_seconds=5, failure_threshold=failures)

    spread = [k8s.core.v1.TopologySpreadConstraintArgs(
        max_skew=1, topology_key=key, when_unsatisfiable="ScheduleAnyway",
        label_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=pod_labels),
    ) for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")] if replicas > 1 else None
    container = k8s.core.v1.ContainerArgs(
        name="mlflow",
        image=MLFLOW_IMAGE,
        command=["mlflow", "server"],
        args=["--host", "0.0.0.0", "--port", "5000", "--serve-artifacts", "--app-name", "basic-auth",
              pulumi.Output.concat("--artifacts-destination=s3://", bucket, f"/{ARTIFACTS_PREFIX}")],
        env=[
            # The database URI (with its password) only ever lives in the Secret; `mlflow server` reads it
            # from this variable, so it is not on the command line either.
            k8s.core.v1.EnvVarArgs(name="MLFLOW_BACKEND_STORE_URI", value_from=k8s.core.v1.EnvVarSourceArgs(
                secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(name=DATABASE_SECRET,
                                                                 key="MLFLOW_BACKEND_STORE_URI"))),
            k8s.core.v1.EnvVarArgs(name=WEBHOOK_KEY_ENV, value_from=k8s.core.v1.EnvVarSourceArgs(
                secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(name=DATABASE_SECRET, key=WEBHOOK_KEY_ENV))),
            # Webhooks go to the in-cluster rollout service over plain HTTP: MLflow's egress NetworkPolicy lets the
            # server reach only that service (and S3, its database, STS), and each delivery is HMAC-signed with a
            # timestamp (docs/model-promotion.md: why not HTTPS inside the namespace).
            k8s.core.v1.EnvVarArgs(name="MLFLOW_WEBHOOK_ALLOWED_SCHEMES", value="https,http"),
            k8s.core.v1.EnvVarArgs(name="MLFLOW_SERVER_ALLOWED_HOSTS", value=allowed_hosts(namespace)),
            # Authentication (components/mlflow_auth.py): the ini file and the CSRF key come from the auth Secret.
            k8s.core.v1.EnvVarArgs(name="MLFLOW_AUTH_CONFIG_PATH",
                                   value=f"{auth.AUTH_CONFIG_DIR}/{auth.AUTH_CONFIG_KEY}"),
            k8s.core.v1.EnvVarArgs(name=auth.FLASK_SECRET_KEY, value_from=k8s.core.v1.EnvVarSourceArgs(
                secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(name=auth.AUTH_SECRET, key=auth.FLASK_SECRET_KEY))),
            k8s.core.v1.EnvVarArgs(name="AWS_DEFAULT_REGION", value=region),
            k8s.core.v1.EnvVarArgs(name="HOME", value="/tmp"),
        ],
        ports=[k8s.core.v1.ContainerPortArgs(name="http", container_port=5000, protocol="TCP")],
        resources=k8s.core.v1.ResourceRequirementsArgs(**RESOURCES),
        # The first start migrates the schema; give it up to five minutes before liveness applies.
        startup_probe=probe(10, 30),
        readiness_probe=probe(10, 3),
        liveness_probe=probe(20, 3),
        security_context=k8s.core.v1.SecurityContextArgs(
            allow_privilege_escalation=False, read_only_root_filesystem=True, run_as_non_root=True,
            run_as_user=auth.RUN_AS, run_as_group=auth.RUN_AS, capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"])),
        volume_mounts=[k8s.core.v1.VolumeMountArgs(name="tmp", mount_path="/tmp"),
                       k8s.core.v1.VolumeMountArgs(name="auth", mount_path=auth.AUTH_CONFIG_DIR, read_only=True)],
    )
    return k8s.apps.v1.DeploymentSpecArgs(
        replicas=replicas,
        selector=k8s.meta.v1.LabelSelectorArgs(match_labels=pod_labels),
        strategy=k8s.apps.v1.DeploymentStrategyArgs(
            type="RollingUpdate",
            rolling_update=k8s.apps.v1.RollingUpdateDeploymentArgs(max_unavailable=0 if is_prod else 1, max_surge=1)),
        template=k8s.core.v1.PodTemplateSpecArgs(
            metadata=k8s.meta.v1.ObjectMetaArgs(labels=pod_labels),
            spec=k8s.core.v1.PodSpecArgs(
                service_account_name=SERVICE_ACCOUNT,
                automount_service_account_token=False,      # IRSA projects its own token; no Kubernetes API use
                security_context=k8s.core.v1.PodSecurityContextArgs(
                    run_as_non_root=True, fs_group=auth.RUN_AS,
                    seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault")),
                containers=[container],
                volumes=[k8s.core.v1.VolumeArgs(name="tmp", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(
                    size_limit="1Gi")),
                    k8s.core.v1.VolumeArgs(name="auth", secret=k8s.core.v1.SecretVolumeSourceArgs(
                        secret_name=auth.AUTH_SECRET, default_mode=0o400,
                        items=[k8s.core.v1.KeyToPathArgs(key=auth.AUTH_CONFIG_KEY, path=auth.AUTH_CONFIG_KEY)]))],
                topology_spread_constraints=spread,
            ),
        ),
    )


def network_policy_specs(pod_labels: dict[str, str], port: int, database_cidrs: pulumi.Input[list[str]],
                         s3_cidrs: pulumi.Input[list[str]], sts_cidrs: pulumi.Input[list[str]]
                         ) -> dict[str, pulumi.Input[dict]]:
    """The `mlflow` namespace's NetworkPolicy specs by object name (camelCase, as the API takes them)."""
    server = {"matchLabels": dict(pod_labels)}

    def to_cidrs(cidrs: list[str], port_: int) -> dict:
        return {"to": [{"ipBlock": {"cidr": c}} for c in sorted(cidrs)], "ports": [{"protocol": "TCP", "port": port_}]}

    return {
        "default-deny": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
        "allow-dns": {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: DNS["namespace"]}},
                                "podSelector": {"matchLabels": DNS["pod_labels"]}}],
                        "ports": [{"protocol": "UDP", "port": DNS["port"]}, {"protocol": "TCP", "port": DNS["port"]}]}],
        },
        # Every team namespace carries the team label (components/tenancy.py); nothing else may connect.
        # ... and the Job that creates the teams' users (components/mlflow_auth.py), from this namespace.
        "server-ingress": {
            "podSelector": server,
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"namespaceSelector": {"matchExpressions": [
                {"key": labels.TEAM, "operator": "Exists"}]}},
                {"podSelector": {"matchLabels": dict(auth.BOOTSTRAP_LABELS)}}],
                "ports": [{"protocol": "TCP", "port": port}]}],
        },
        "users-egress": {
            "podSelector": {"matchLabels": dict(auth.BOOTSTRAP_LABELS)},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"podSelector": server}], "ports": [{"protocol": "TCP", "port": port}]}],
        },
        # The database subnets, S3, and STS (IRSA's token exchange) only when the VPC has an STS endpoint.
        "server-egress": pulumi.Output.all(database_cidrs, s3_cidrs, sts_cidrs).apply(lambda a: {
            "podSelector": server,
            "policyTypes": ["Egress"],
            "egress": [to_cidrs(a[0], DATABASE_PORT), to_cidrs(a[1], HTTPS_PORT),
                       *([to_cidrs(a[2], HTTPS_PORT)] if a[2] else [])],
        }),
    }
