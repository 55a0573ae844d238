"""`python -m preview diff` on scratch git histories, as a reviewer would try it.

A clone of this working tree gets the fixture stack `tests/fixtures/Pulumi.review.yaml` and a base commit; each
scenario changes one thing on top (config or code, found generically from the base render) and reads the comment
and the full diff. Nothing here depends on what the shipped Pulumi.<stack>.yaml files contain.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from preview import render
from tests.conftest import PROJECT_DIR, rendered_file

FIXTURE = Path(__file__).parent / "fixtures" / "Pulumi.review.yaml"
STACK = "review"
ITEM = re.compile(r"^- :\w+: \*\*(replace|delete|add|update)\*\* `([^`]+)` \*\*([^*]+)\*\*", re.M)


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args], check=True,
                   capture_output=True)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> tuple[Path, dict]:
    """The scratch repository (working tree under test + fixture stack, committed) and its rendered plan."""
    repo = tmp_path_factory.mktemp("history") / "base"
    git(PROJECT_DIR, "clone", "--quiet", "--shared", str(PROJECT_DIR), str(repo))
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=PROJECT_DIR, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = PROJECT_DIR / name
        if src.is_file() and not src.is_symlink():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            (repo / name).write_bytes(src.read_bytes())
    (repo / f"Pulumi.{STACK}.yaml").write_text(FIXTURE.read_text())
    git(repo, "add", "-A")
    git(repo, "commit", "--quiet", "--allow-empty", "-m", "base")
    # The base's plan, for the names and values the scenarios look for: the same code and stack file rendered
    # in-process (the CLI renders the base again itself, from the commit).
    return repo, render.plan(rendered_file(STACK, FIXTURE).run)


def preview_diff(base_repo: Path, tmp_path: Path, edit) -> tuple[str, str]:
    """Clone the base, apply `edit(repo)`, run the real CLI; return (comment, full diff)."""
    repo = tmp_path / "head"
    git(base_repo, "clone", "--quiet", str(base_repo), str(repo))
    edit(repo)
    full = tmp_path / "diff-full.md"
    result = subprocess.run([sys.executable, "-m", "preview", "diff", STACK, "--base", "HEAD", "--full", str(full)],
                            cwd=repo, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout, full.read_text()


def edit_config(repo: Path, change) -> None:
    path = repo / f"Pulumi.{STACK}.yaml"
    doc = yaml.safe_load(path.read_text())
    change(doc["config"])
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def items(text: str) -> list[tuple[str, str, str]]:
    """(action, type, name) of every resource entry in the details."""
    return ITEM.findall(text)


def entry(text: str, name: str) -> str:
    """The Markdown of one resource entry (up to the next entry or section)."""
    start = re.search(rf"^- :\w+: \*\*\w+\*\* `[^`]+` \*\*{re.escape(name)}\*\*.*$", text, re.M)
    assert start, f"no entry for {name}"
    end = re.compile(r"^(- :\w+: \*\*|</details>)", re.M).search(text, start.end())
    return text[start.start():end.start() if end else None]


def test_vpc_cidr_change_replaces_the_vpc_and_its_subnets(base, tmp_path):
    repo, plan = base
    comment, full = preview_diff(repo, tmp_path, lambda r: edit_config(
        r, lambda c: c["mlops-platform:network"].update(vpcCidr="10.41.0.0/16")))
    vpc = [r["name"] for r in plan["resources"] if r["type"] == "aws:ec2/vpc:Vpc"]
    subnets = [r["name"] for r in plan["resources"] if r["type"] == "aws:ec2/subnet:Subnet"]
    replaced = {(typ, name) for action, typ, name in items(full) if action == "replace"}
    assert {("aws:ec2/vpc:Vpc", n) for n in vpc} | {("aws:ec2/subnet:Subnet", n) for n in subnets} <= replaced
    assert len(subnets) >= 2 and not [i for i in items(full) if i[1] in ("aws:ec2/vpc:Vpc", "aws:ec2/subnet:Subnet")
                                      and i[0] != "replace"]
    # At the top of the comment, the direct replacement first, with its reason.
    summary = comment.split("### Changes by component")[0]
    assert "> [!CAUTION]" in summary and f"`aws:ec2/vpc:Vpc` **{vpc[0]}** (network): `cidrBlock` changed" in summary
    assert summary.index(f"**{vpc[0]}**") < summary.index("refers to replaced")
    assert "`cidrBlock`: `10.40.0.0/16` → `10.41.0.0/16`" in entry(full, vpc[0])


def test_a_team_added_at_the_top_is_one_added_team_with_its_quota(base, tmp_path):
    repo, _ = base
    comment, full = preview_diff(repo, tmp_path, lambda r: edit_config(r, lambda c: c["mlops-platform:teams"].insert(
        0, {"name": "gamma", "gpuQuota": 3, "notebookProfiles": ["cpu"]})))
    found = items(full)
    # Two replacements, both MLflow's user set-up (components/mlflow_auth.py): the Secret of the teams' passwords
    # gains the new team's (a Secret's data is replaced, not patched) and the users Job, named after the team list,
    # runs again to create the new team's user (a Job's pod template cannot be updated in place).
    assert sorted((t, n) for a, t, n in found if a == "replace") == [
        ("kubernetes:batch/v1:Job", "mlflow-team-users"), ("kubernetes:core/v1:Secret", "mlflow-team-users")]
    assert {a for a, _, _ in found} == {"add", "update", "replace"} and "**2** to replace" in comment
    # Every added resource is the new team's; every updated one changes only because of it.
    for action, typ, name in found:
        assert "gamma" in (name if action == "add" else entry(full, name)), (action, typ, name)
    other_teams = {t["name"] for t in yaml.safe_load(FIXTURE.read_text())["config"]["mlops-platform:teams"]}
    for team in other_teams:    # no other team's resource appears, and no existing profile "turns into" another
        assert f"team-{team}" not in full and f"[{team}" not in full
    quota = entry(full, next(n for a, t, n in found if t == "kubernetes:core/v1:ResourceQuota"))
    # gpuQuota 3 plus the 1 GPU its Kueue queue may borrow (the pools supply 4; docs/capacity.md)
    assert '`spec.hard["requests.nvidia.com/gpu"]`: `4`' in quota
    # The only warning: those two replacements, each with its reason.
    summary = comment.split("### Changes by component")[0]
    warned = [line for line in summary.splitlines() if line.startswith("> - ")]
    assert summary.count("> [!") == 1 and len(warned) == 2
    assert all("**mlflow-team-users** (mlflow)" in line for line in warned)


def _bump(version: str) -> str:
    parts = version.lstrip("v").split(".")
    parts[1] = str(int(parts[1]) + 1)
    return ("v" if version.startswith("v") else "") + ".".join(parts[:2] + ["0"])


def _replace_literal(repo: Path, literal: str, new: str) -> Path:
    """Replace a quoted literal in the one source file under components/ that holds it."""
    hits = [p for p in (repo / "components").rglob("*") if p.is_file() and p.suffix in (".py", ".yaml")
            and (f'"{literal}"' in p.read_text() or f": {literal}\n" in p.read_text())]
    assert len(hits) == 1, f"{literal!r} found in {hits}"
    text = hits[0].read_text()
    hits[0].write_text(text.replace(f'"{literal}"', f'"{new}"').replace(f": {literal}\n", f": {new}\n"))
    return hits[0]


def test_dashboard_edit_and_crd_chart_bump(base, tmp_path):
    repo, plan = base
    boards = [r for r in plan["resources"] if r["type"] == "kubernetes:core/v1:ConfigMap"
              and any(k.endswith(".json") for k in (r["inputs"].get("data") or {}))]
    board = boards[0]
    key = next(k for k in board["inputs"]["data"] if k.endswith(".json"))
    panel = json.loads(board["inputs"]["data"][key])["panels"][0]
    release = next(r for r in plan["resources"] if r["type"] == "kubernetes:helm.sh/v3:Release"
                   and r["inputs"]["chart"].endswith("karpenter"))
    old_version = release["inputs"]["version"]

    def edit(r: Path) -> None:
        _replace_literal(r, panel["title"], panel["title"] + " (edited)")
        _replace_literal(r, old_version, _bump(old_version))

    comment, full = preview_diff(repo, tmp_path, edit)
    board_entry = entry(full, board["name"])
    assert (f'`data["{key}"](json).panels[id={panel["id"]}].title`: `{panel["title"]}` → '
            f'`{panel["title"]} (edited)`') in board_entry
    assert board_entry.count("\n  - ") == 1   # that one field, not the whole document
    summary = comment.split("### Changes by component")[0]
    assert "**Manual step before `pulumi up`**" in summary
    assert f"`karpenter` {old_version} → {_bump(old_version)} carries CRDs in `crds/`" in summary
    assert f"`version`: `{old_version}` → `{_bump(old_version)}`" in entry(full, release["name"])
