"""JupyterHub authentication (components/notebooks.py): the authenticator class and its `hub.config`, from
`notebooks.auth` (GitHub or OIDC with a `secure:` client secret read from OAUTH_CLIENT_SECRET, or dummy in dev), and
the team groups the hub fills from the identity provider."""

from __future__ import annotations

from typing import Any

from components.config import NotebooksConfig

AUTHENTICATOR_CLASSES = {"github": "github", "oidc": "generic-oauth", "dummy": "dummy"}
OAUTH_CLASSES = {"github": "GitHubOAuthenticator", "oidc": "GenericOAuthenticator"}
NOTEBOOK_CONTAINER_SECURITY_CONTEXT = {"runAsNonRoot": True, "allowPrivilegeEscalation": False,
                                      "capabilities": {"drop": ["ALL"]}}

GITHUB_GROUPS = '''\
def _github_teams(auth_state):
    """JupyterHub groups from the user's GitHub teams, as `org:team-slug`."""
    return [f"{t['organization']['login']}:{t['slug']}" for t in auth_state.get("teams", [])]


c.GitHubOAuthenticator.auth_state_groups_key = _github_teams
'''


def authenticator_config(cfg: NotebooksConfig,
                         team_groups: list[tuple[str, str]]) -> tuple[dict[str, Any], dict[str, str]]:
    """(`hub.config`, extra `hub.extraConfig` snippets) for the configured authenticator."""
    auth = cfg.auth
    hub_config: dict[str, Any] = {
        "JupyterHub": {"authenticator_class": AUTHENTICATOR_CLASSES[auth.type]},
        # Pods in the team namespaces: the hub watches pods and events in every namespace; each profile names its
        # namespace (kubespawner_override), and TeamNamespaceSpawner never creates one.
        # Pod Security `restricted` for every notebook server (the team namespaces warn at that level); the chart's
        # uid (1000) and fsGid (100) are merged in by KubeSpawner.
        "KubeSpawner": {"enable_user_namespaces": True,
                        "container_security_context": dict(NOTEBOOK_CONTAINER_SECURITY_CONTEXT),
                        "pod_security_context": {"seccompProfile": {"type": "RuntimeDefault"}}},
    }
    extra: dict[str, str] = {}
    if auth.type == "dummy":
        hub_config["Authenticator"] = {"allowed_users": sorted(auth.dummy_users)}
        hub_config["JupyterHub"]["load_groups"] = {
            group: {"users": sorted(u for u, teams in auth.dummy_users.items() if team in teams)}
            for team, group in team_groups}
        return hub_config, extra
    oauth: dict[str, Any] = {
        "client_id": auth.client_id,
        "oauth_callback_url": auth.callback_url,   # the client secret comes from OAUTH_CLIENT_SECRET
        "manage_groups": True,
        "admin_groups": list(auth.admin_groups),
    }
    if auth.type == "github":
        oauth.update({"allowed_organizations": list(auth.allowed_organizations), "scope": ["read:org"],
                      "populate_teams_in_auth_state": True})
        hub_config["Authenticator"] = {"enable_auth_state": True}
        extra["10-github-teams.py"] = GITHUB_GROUPS
    else:
        oauth.update({"authorize_url": auth.authorize_url, "token_url": auth.token_url,
                      "userdata_url": auth.userdata_url, "username_claim": auth.username_claim,
                      "scope": ["openid", "profile", "email"],
                      "auth_state_groups_key": f"oauth_user.{auth.groups_claim}",
                      # only members of a team (or admins) may log in at all
                      "allowed_groups": sorted({g for _, g in team_groups} | set(auth.admin_groups))})
    hub_config[OAUTH_CLASSES[auth.type]] = oauth
    return hub_config, extra
