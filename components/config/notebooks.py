"""`notebooks`: JupyterHub's authentication, profiles, home volumes and culling (components/notebooks.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, field_validator, model_validator

from components import catalog
from components.config.problems import FieldError, Problem, known
from components.config.types import DnsLabel, Duration, HttpsUrl, MigProfile, Model, PinnedImage, duration_seconds
from components.images import registry_allowed
from components.planning import gpu_supply, notebook_profiles

if TYPE_CHECKING:
    from components.config.platform import PlatformConfig

NotebookGpuSharing = Literal["none", "time-slicing", "mig"]


class NotebookGpuConfig(Model):
    """The GPU a notebook profile asks for: whole GPUs of a type, one time-sliced replica, or one MIG instance."""

    type: str = Field(description="GPU type, a gpuTypes key of components/data/gpus.yaml, for example 't4'.")
    count: Annotated[int, Field(ge=1, le=8)] = Field(1, description=(
        "Whole GPUs; a time-sliced or MIG profile gets one unit."))
    sharing: NotebookGpuSharing = Field("none", description="none (whole GPUs), time-slicing or mig.")
    mig_profile: MigProfile | None = Field(None, description=(
        "With sharing 'mig': the MIG profile, for example '1g.10gb'."))

    @field_validator("type")
    @classmethod
    def _known_gpu_type(cls, value: str) -> str:
        if value not in catalog.gpu_types():
            raise ValueError(f"is not a GPU type of components/data/gpus.yaml; known: {', '.join(catalog.gpu_types())}")
        return value

    @model_validator(mode="after")
    def _sharing_fields(self) -> NotebookGpuConfig:
        if self.sharing != "none" and self.count != 1:
            raise FieldError("count", f"count must be 1 with sharing '{self.sharing}': a pod gets one replica or MIG instance")
        if (self.sharing == "mig") != (self.mig_profile is not None):
            raise FieldError("migProfile", "migProfile goes with sharing 'mig' and only with it, for example "
                             "{type: a100-80gb, sharing: mig, migProfile: 1g.10gb}")
        return self


class NotebookProfileConfig(Model):
    """A JupyterHub server profile. Teams list the names they may use in `teams[].notebookProfiles`."""

    name: DnsLabel = Field(description="Profile name; teams list it in teams[].notebookProfiles.")
    display_name: str | None = Field(None, description="Name shown in JupyterHub's spawn form; default: name.")
    description: str | None = Field(None, description="Description shown in JupyterHub's spawn form.")
    cpu: Annotated[float, Field(gt=0, le=192)] = Field(description="CPU cores requested.")
    memory_gb: Annotated[int, Field(alias="memoryGB", ge=1, le=2048)] = Field(description=(
        "Memory requested, in decimal GB (10^9 bytes; passed to KubeSpawner as bytes)."))
    gpu: NotebookGpuConfig | None = Field(None, description="The GPU the profile asks for; none: a CPU profile.")
    image: PinnedImage | None = Field(None, description=(
        "Pinned notebook image; default: the CPU or CUDA image of components/notebooks.py."))
    pool: DnsLabel | None = Field(None, description=(
        "Pin a GPU pool by name; default: the best pool offering the GPU (on-demand first)."))


class ProfileUtilizationConfig(Model):
    """One profile's GPU-utilization culling, overriding the defaults of `notebooks.culling.utilization`."""

    gpu_busy_percent: Annotated[float, Field(gt=0, le=100)] | None = Field(None, description=(
        "A GPU below this busy-ness (DCGM engine activity, else GPU utilization, in %) counts as idle; default: "
        "utilization.gpuBusyPercent."))
    gpu_memory_busy_gib: Annotated[float, Field(gt=0)] | None = Field(None, alias="gpuMemoryBusyGiB", description=(
        "A server holding at least this much GPU memory counts as busy; default: utilization.gpuMemoryBusyGiB."))
    idle_timeout: Duration | None = Field(None, description=(
        "How long the GPUs must stay idle before the server is stopped; default and upper bound: "
        "culling.gpuIdleTimeout."))


class UtilizationCullingConfig(Model):
    """The GPU-utilization culler (docs/gpu-waste.md): a hub service that stops GPU servers whose GPUs stayed idle
    for the profile's idle timeout, whatever the browser does. Needs observability (it reads Prometheus)."""

    enabled: bool | None = Field(None, description=(
        "Run the GPU-utilization culler in the hub; default: when observability is enabled (it reads Prometheus)."))
    every: Duration = Field("5m", description="How often it looks at the GPUs.")
    gpu_busy_percent: Annotated[float, Field(gt=0, le=100)] = Field(5, description=(
        "A GPU below this busy-ness (DCGM engine activity, else GPU utilization, in %) counts as idle."))
    gpu_memory_busy_gib: Annotated[float, Field(gt=0)] | None = Field(None, alias="gpuMemoryBusyGiB", description=(
        "A server holding at least this much GPU memory counts as busy; unset: memory held alone never keeps a "
        "server running (a model left loaded on a GPU is the waste this culler stops)."))
    profiles: dict[DnsLabel, ProfileUtilizationConfig] = Field({}, description=(
        "Per GPU profile (by profile name, as in teams[].notebookProfiles): thresholds and idle timeout."))


class NotebookCullingConfig(Model):
    """Idle culling: the hub's culler for every server, a shorter server-side timeout for GPU profiles, and the
    GPU-utilization culler (the time-based settings stay the outer bound)."""

    idle_timeout: Duration = Field("8h", description="Any server idle this long is stopped (the hub's culler).")
    gpu_idle_timeout: Duration = Field("1h", description="GPU profiles: the server stops itself after this long idle.")
    max_age: Duration = Field("72h", description="Any server is stopped after this long, busy or not.")
    gpu_max_age: Duration = Field("24h", description=(
        "GPU profiles' pods are ended after this long (activeDeadlineSeconds)."))
    every: Duration = Field("10m", description="How often the hub's culler looks.")
    utilization: UtilizationCullingConfig = Field(UtilizationCullingConfig(), description=(
        "Stop GPU servers whose GPUs stayed idle (Prometheus DCGM series), within the time-based bounds above."))

    @model_validator(mode="after")
    def _ordered(self) -> NotebookCullingConfig:
        s = duration_seconds
        for name, p in self.utilization.profiles.items():
            if p.idle_timeout is not None and not 60 <= s(p.idle_timeout) <= s(self.gpu_idle_timeout):
                raise FieldError(f"utilization.profiles.{name}.idleTimeout", "must be between 1m and gpuIdleTimeout "
                                 f"({self.gpu_idle_timeout}): the time-based timeout is the outer bound")
        if s(self.utilization.every) > s(self.gpu_idle_timeout) or s(self.utilization.every) < 60:
            raise FieldError("utilization.every", "must be between 1m and gpuIdleTimeout, or the culler looks too "
                             "rarely to honour it")
        if s(self.gpu_idle_timeout) > s(self.idle_timeout):
            raise FieldError("gpuIdleTimeout", "gpuIdleTimeout must not exceed idleTimeout: GPU notebooks are culled sooner, not later")
        if s(self.gpu_max_age) > s(self.max_age):
            raise FieldError("gpuMaxAge", "gpuMaxAge must not exceed maxAge")
        if s(self.idle_timeout) > s(self.max_age) or s(self.gpu_idle_timeout) > s(self.gpu_max_age):
            raise FieldError("idleTimeout", "an idle timeout longer than its maximum age never applies; shorten it")
        if s(self.every) > s(self.gpu_idle_timeout):
            raise FieldError("every", "every must not exceed gpuIdleTimeout, or the culler looks too rarely to honour it")
        if min(s(self.gpu_idle_timeout), s(self.every)) < 60:
            raise ValueError("timeouts below one minute would cull servers while they start")
        return self


class NotebookAuthConfig(Model):
    """How people log in to JupyterHub. `github` and `oidc` take the client secret as a `secure:` config value."""

    type: Literal["github", "oidc", "dummy"] = Field("dummy", description=(
        "github, oidc, or dummy (any password; dev only, refused in prod)."))
    client_id: str | None = Field(None, description="OAuth client id (github, oidc).")
    # Marked secret: the stack-file schema (components/config/docs.py) also accepts Pulumi's `secure:` ciphertext.
    client_secret: str | None = Field(None, json_schema_extra={"x-secret": True}, description=(
        "OAuth client secret, as a secret: `pulumi config set --path --secret "
        "mlops-platform:notebooks.auth.clientSecret`."))
    callback_url: HttpsUrl | None = Field(None, description="OAuth callback, https://<host>/hub/oauth_callback.")
    allowed_organizations: list[str] = Field([], description=(
        "github: only members of these organizations log in (required with github)."))
    authorize_url: HttpsUrl | None = Field(None, description="oidc: the provider's authorization endpoint.")
    token_url: HttpsUrl | None = Field(None, description="oidc: the provider's token endpoint.")
    userdata_url: HttpsUrl | None = Field(None, description="oidc: the provider's userinfo endpoint.")
    username_claim: str = Field("preferred_username", description="oidc: the claim holding the user name.")
    groups_claim: str = Field("groups", description="oidc: the claim listing the user's groups (team membership).")
    admin_groups: list[str] = Field([], description="Groups whose members are JupyterHub admins.")
    dummy_users: dict[str, list[DnsLabel]] = Field({}, description="dummy: user -> the teams it belongs to (dev).")

    @model_validator(mode="after")
    def _fields_for_type(self) -> NotebookAuthConfig:
        if self.type != "dummy":
            missing = [k for k, v in (("clientId", self.client_id), ("clientSecret", self.client_secret),
                                      ("callbackUrl", self.callback_url)) if not v]
            if missing:
                raise ValueError(f"type '{self.type}' needs {', '.join(missing)} (the client secret as a secure "
                                 "value: pulumi config set --path --secret mlops-platform:notebooks.auth.clientSecret)")
            if self.dummy_users:
                raise ValueError("dummyUsers only applies to type 'dummy'")
        if self.type == "github" and not self.allowed_organizations:
            raise ValueError("type 'github' needs allowedOrganizations, or every GitHub user could log in")
        if self.type == "oidc" and not (self.authorize_url and self.token_url and self.userdata_url):
            raise ValueError("type 'oidc' needs authorizeUrl, tokenUrl and userdataUrl (the provider's endpoints)")
        if self.type != "oidc" and any((self.authorize_url, self.token_url, self.userdata_url)):
            raise ValueError("authorizeUrl, tokenUrl and userdataUrl only apply to type 'oidc'")
        return self


class NotebooksConfig(Model):
    """JupyterHub: authentication, profiles (generated from the GPU pools, plus `profiles`), home volumes, culling."""

    enabled: bool = Field(True, description="Install JupyterHub.")
    auth: NotebookAuthConfig = Field(NotebookAuthConfig(), description="How people log in to JupyterHub.")
    profiles: list[NotebookProfileConfig] = Field([], description=(
        "Profiles added to the generated ones (CPU, one per GPU offering); the same name replaces a generated one."))
    home_gib: Annotated[int, Field(alias="homeGiB", ge=1, le=1000)] = Field(10, description=(
        "Home volume per user and team, in GiB (gp3 PVC)."))
    culling: NotebookCullingConfig = Field(NotebookCullingConfig(), description=(
        "When idle and old servers are stopped."))
    team_groups: dict[DnsLabel, str] = Field({}, description=(
        "Team -> JupyterHub group of its members; default: the team's group."))
    hub_replicas: Literal[1] = Field(1, description="Hub replicas: 1 (the hub keeps state in sqlite on a PVC).")


def problems(cfg: PlatformConfig) -> list[Problem]:
    """Profiles against the GPU pools, teams' profiles against their quotas, authentication in prod."""
    nb = cfg.notebooks
    errors: list[Problem] = []
    if cfg.is_prod and nb.enabled and nb.auth.type == "dummy":
        errors.append(Problem("notebooks.auth.type", "must not be 'dummy' in prod (anyone could log in with any "
                                                     "password); use 'github' or 'oidc' with a secure clientSecret", nb.auth.type))
    profiles, profile_errors = notebook_profiles.resolve_notebook_profiles(cfg)
    errors += profile_errors
    allowed = list(cfg.supply_chain.allowed_registries)
    for i, p in enumerate(nb.profiles):
        if p.image is not None and not registry_allowed(p.image, allowed):
            errors.append(Problem(f"notebooks.profiles[{i}].image", "is not from a registry in supplyChain.allowedRegistries; "
                                  "the team namespaces' admission policy would refuse the notebook pod", p.image))
    errors += utilization_problems(cfg, profiles)
    team_names = [t.name for t in cfg.teams]
    for team, _ in nb.team_groups.items():
        if team not in team_names:
            errors.append(Problem(f"notebooks.teamGroups.{team}", f"names no team in `teams`; known: "
                                  f"{known(team_names, team)}", team))
    for user, teams in nb.auth.dummy_users.items():
        for j, team in enumerate(teams):
            if team not in team_names:
                errors.append(Problem(f"notebooks.auth.dummyUsers.{user}[{j}]", f"names no team in `teams`; known: "
                                      f"{known(team_names, team)}", team))
    for i, team in enumerate(cfg.teams):
        quota = gpu_supply.team_gpu_quota(cfg, team)
        for j, name in enumerate(team.notebook_profiles):
            path = f"teams[{i}].notebookProfiles[{j}]"
            if name not in profiles:
                if not any(e.path.startswith("notebooks.profiles") for e in profile_errors):
                    errors.append(Problem(path, f"names no notebook profile of this stack; known: {', '.join(profiles)} "
                                          "(generated from the GPU pools, plus notebooks.profiles)", name))
                continue
            p = profiles[name]
            if p.resource is not None and p.units > quota.get(p.resource, 0):
                errors.append(Problem(path, f"asks for {p.units} {p.resource} per notebook, more than the team's quota of "
                                      f"{quota.get(p.resource, 0)}; raise the quota or use a smaller profile", name))
    return errors


def utilization_problems(cfg: PlatformConfig, profiles: dict[str, notebook_profiles.NotebookProfile]) -> list[Problem]:
    """The GPU-utilization culler reads Prometheus; its per-profile settings name GPU profiles of the stack; a team's
    off-hours timeout stays within the time-based bound."""
    nb, errors = cfg.notebooks, []
    utilization = nb.culling.utilization
    path = "notebooks.culling.utilization"
    if nb.enabled and utilization.enabled is True and not cfg.observability.enabled:
        errors.append(Problem(f"{path}.enabled", "needs observability.enabled: the culler reads the GPUs' DCGM series "
                              "from the platform's Prometheus (or leave it unset)", utilization.enabled))
    gpu = [name for name, p in profiles.items() if p.resource is not None]
    for name in utilization.profiles:
        if name not in gpu:
            errors.append(Problem(f"{path}.profiles.{name}", f"names no GPU notebook profile of this stack; known: "
                                  f"{known(gpu, name)}", name))
    bound = duration_seconds(nb.culling.gpu_idle_timeout)
    for i, team in enumerate(cfg.teams):
        off = team.notebook_off_hours
        if off is not None and duration_seconds(off.gpu_idle_timeout) > bound:
            errors.append(Problem(f"teams[{i}].notebookOffHours.gpuIdleTimeout", "must not exceed "
                                  f"notebooks.culling.gpuIdleTimeout ({nb.culling.gpu_idle_timeout}): off-hours "
                                  "stop idle GPUs sooner, not later", off.gpu_idle_timeout))
    return errors
