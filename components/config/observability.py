"""`observability`: Prometheus, Grafana and the alerts' thresholds (components/observability/)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import AfterValidator, Field

from components import catalog
from components.config import alerting
from components.config.alerting import AlertmanagerConfig
from components.config.problems import Problem
from components.config.types import Duration, Model, duration_seconds

if TYPE_CHECKING:
    from components.config.platform import PlatformConfig


class ObservabilityAlertsConfig(Model):
    """Thresholds of the platform's model and capacity alerts (the GPU waste alerts' are `gpu.alerts`)."""

    error_rate_percent: Annotated[float, Field(gt=0, le=100)] = Field(5, description=(
        "Share of a model's requests answered 5xx ..."))
    error_rate_for: Duration = Field("5m", description="... for this long fires the error-rate alert.")
    latency_for: Duration = Field("10m", description=(
        "A model's p99 above its latencyP99Ms for this long fires the latency alert."))
    pending_gpu_pods_for: Duration = Field("10m", description=(
        "A GPU NodePool at its GPU limit while GPU pods wait, for this long, fires the capacity alert."))


def _scrape_interval(value: str) -> str:
    if not 10 <= duration_seconds(value) <= 60:
        raise ValueError("must be between 10s and 1m: the dashboards' and alerts' 5m rate windows need several "
                         "samples, and shorter intervals multiply Prometheus' load for nothing")
    return value


class ObservabilityConfig(Model):
    """kube-prometheus-stack (Prometheus, Grafana, kube-state-metrics, the operator) on the system nodes."""

    enabled: bool = Field(True, description="Install Prometheus and Grafana (required in prod).")
    retention_days: Annotated[int, Field(ge=1, le=3650)] | None = Field(None, description=(
        "Days Prometheus keeps; default 15, in prod 31 (a month of GPU cost)."))
    storage_gib: Annotated[int, Field(alias="storageGiB", ge=10, le=16000)] = Field(50, description=(
        "Volume of each Prometheus replica, in GiB."))
    storage_class: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")] = Field("gp3", description=(
        "StorageClass of the Prometheus volumes."))
    prometheus_replicas: Annotated[int, Field(ge=1, le=3)] = Field(1, description="Prometheus replicas.")
    scrape_interval: Annotated[Duration, AfterValidator(_scrape_interval)] = Field("30s", description=(
        "How often Prometheus scrapes, between 10s and 1m."))
    node_exporter: bool = Field(False, description=(
        "Node CPU, memory and disk metrics (a DaemonSet on every node, GPU nodes too)."))
    alerts: ObservabilityAlertsConfig = Field(ObservabilityAlertsConfig(), description=(
        "Thresholds of the model and capacity alerts (the GPU waste alerts' are gpu.alerts)."))
    alertmanager: AlertmanagerConfig = Field(AlertmanagerConfig(), description=(
        "Alertmanager: the platform receiver, SMTP, grouping; teams' receivers are teams[].alertReceiver "
        "(docs/alerts.md)."))

    def retention(self, is_prod: bool) -> int:
        """Days Prometheus keeps: `retentionDays`, else 31 in prod (a month of GPU cost) and 15 elsewhere."""
        return self.retention_days or (31 if is_prod else 15)


def problems(cfg: PlatformConfig) -> list[Problem]:
    """Prod keeps its alerts and a month of metrics; every model's latency target is one the alert can see."""
    obs = cfg.observability
    errors: list[Problem] = []
    if cfg.is_prod and not obs.enabled:
        errors.append(Problem("observability.enabled", "must be true in prod: the latency, error-rate and GPU capacity "
                              "alerts and the cost dashboards depend on it", obs.enabled))
    if cfg.is_prod and obs.retention_days is not None and obs.retention_days < 31:
        errors.append(Problem("observability.retentionDays", "must be at least 31 in prod, so the cost dashboard can "
                                                             "show a whole month of GPU cost", obs.retention_days))
    if obs.enabled:
        top_ms = catalog.inference_latency_buckets_seconds()[-1] * 1000
        for i, team in enumerate(cfg.teams):
            for j, m in enumerate(team.models):
                if m.latency_p99_ms >= top_ms:
                    errors.append(Problem(f"teams[{i}].models[{j}].latencyP99Ms", f"must be below {top_ms:g} ms: the "
                                                                                  "queue-proxy's latency histogram "
                                                                                  "ends there "
                                                                                  "(components/data/metrics.yaml), "
                                                                                  "so the p99 alert could never fire "
                                                                                  "above it", m.latency_p99_ms))
        for key, value in (("errorRateFor", obs.alerts.error_rate_for), ("latencyFor", obs.alerts.latency_for),
                           ("pendingGpuPodsFor", obs.alerts.pending_gpu_pods_for)):
            if duration_seconds(value) < 2 * duration_seconds(obs.scrape_interval):
                errors.append(Problem(f"observability.alerts.{key}", "must be at least two scrape intervals "
                                                                     f"(scrapeInterval {obs.scrape_interval}), or one "
                                                                     "missed scrape fires or clears the alert", value))
    return errors + alerting.problems(cfg)
