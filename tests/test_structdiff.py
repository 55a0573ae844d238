"""The structural differ and the replacement table, on small hand-made values and plans."""

from __future__ import annotations

import copy
import json
import tarfile

import pytest

from preview import diff, replacements, structdiff


def paths(old, new) -> list[tuple[str, str]]:
    return [(c.path, c.kind) for c in structdiff.diff(old, new)]


def test_a_list_item_inserted_at_the_top_is_one_addition():
    old = {"teams": [{"name": "a", "gpu": 4}, {"name": "b", "gpu": 1}]}
    new = {"teams": [{"name": "z", "gpu": 0}, *copy.deepcopy(old["teams"])]}
    assert paths(old, new) == [("teams[name=z]", "added")]
    # Unkeyed items are aligned as a sequence: still one addition, not a cascade of changes.
    assert paths({"x": [[1], [2]]}, {"x": [[0], [1], [2]]}) == [("x[0]", "added")]
    # Mutation: without identity keys a positional differ would report every item; the sequence fallback must not.
    assert paths([{"v": 1}, {"v": 2}], [{"v": 0}, {"v": 1}, {"v": 2}]) == [("[0]", "added")]


def test_identity_keys_and_natural_order():
    rules = [{"alert": f"A{i}", "for": "5m"} for i in range(12)]
    changed = copy.deepcopy(rules)
    changed[2]["for"], changed[11]["for"] = "1m", "1m"
    assert paths({"rules": rules}, {"rules": changed}) == [("rules[alert=A2].for", "changed"),
                                                            ("rules[alert=A11].for", "changed")]
    assert sorted(["r[11]", "r[2]", "r[1]"], key=structdiff.natural_key) == ["r[1]", "r[2]", "r[11]"]
    # Identity must be unique within each list: duplicate slugs fall back to sequence alignment.
    assert structdiff.identity_key([{"slug": "a"}, {"slug": "a"}]) is None


def test_embedded_json_is_diffed_as_a_structure():
    board = {"uid": "gpu", "panels": [{"id": 1, "title": "GPUs", "unit": "short"}, {"id": 2, "title": "Cost"}]}
    edited = copy.deepcopy(board)
    edited["panels"][0]["unit"] = "percent"
    changes = structdiff.diff({"data": {"gpu.json": json.dumps(board)}}, {"data": {"gpu.json": json.dumps(edited)}})
    assert [(c.path, c.old, c.new) for c in changes] == [
        ('data["gpu.json"](json).panels[id=1].unit', "short", "percent")]
    yaml_doc = "a: 1\nb: [x, y]\n"
    assert paths({"v": yaml_doc}, {"v": yaml_doc.replace("1", "2")}) == [("v(yaml).a", "changed")]
    assert paths({"v": "plain"}, {"v": "text"}) == [("v", "changed")]


def res(typ, name, inputs, deps=(), protect=False):
    return {"urn": f"urn:pulumi:t::p::{typ}::{name}", "type": typ, "name": name, "custom": True, "parent": "",
            "provider": "", "dependencies": [f"urn:pulumi:t::p::{d}" for d in deps], "protect": protect,
            "retainOnDelete": False, "inputs": inputs}


VPC, SUBNET = "aws:ec2/vpc:Vpc", "aws:ec2/subnet:Subnet"


def vpc_plan(cidr: str, subnet_cidr: str = "10.0.0.0/24", protect: bool = False) -> dict:
    from preview.aws_mocks import AwsLikeMocks
    from types import SimpleNamespace

    vpc_id, _ = AwsLikeMocks().new_resource(SimpleNamespace(typ=VPC, name="vpc", inputs={}))
    return {"resources": [
        res(VPC, "vpc", {"cidrBlock": cidr}, protect=protect),
        res(SUBNET, "sub", {"cidrBlock": subnet_cidr, "vpcId": vpc_id, "tags": {"a": "b"}}, deps=[f"{VPC}::vpc"]),
    ]}


def test_a_force_new_change_replaces_and_propagates_to_what_refers_to_it(monkeypatch):
    d = diff.diff_plans(vpc_plan("10.0.0.0/16"), vpc_plan("10.1.0.0/16", protect=True))
    assert {r.name: r.replace_reasons for r in d.replaced} == {
        "vpc": ["`cidrBlock` changed"], "sub": ["`vpcId` refers to replaced `vpc`"]}
    assert d.replaced[0].protect
    # A tag change is an in-place update.
    head = vpc_plan("10.0.0.0/16")
    head["resources"][1]["inputs"]["tags"] = {"a": "c"}
    assert [(r.name, r.replaced) for r in diff.diff_plans(vpc_plan("10.0.0.0/16"), head).changed] == [("sub", False)]
    # Mutation: without the table's entry the VPC change is (wrongly) an update, and nothing propagates.
    table = copy.deepcopy(replacements.table())
    table["types"][VPC]["forceNew"] = []
    monkeypatch.setattr(replacements, "table", lambda: table)
    assert diff.diff_plans(vpc_plan("10.0.0.0/16"), vpc_plan("10.1.0.0/16")).replaced == []


def test_force_new_paths_cover_nested_and_keyed_paths():
    assert replacements.triggering("kubernetes:core/v1:ConfigMap", ['data["a.json"](json).panels[id=1].title'])
    assert replacements.triggering("kubernetes:apps/v1:Deployment", ["spec.selector.matchLabels.app", "metadata.name"])
    assert not replacements.triggering("kubernetes:apps/v1:Deployment", ["spec.replicas"])
    assert replacements.triggering("random:index/randomPassword:RandomPassword", ["length"])


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_declared_resource_type_has_a_sourced_entry(stack, request):
    rendered = request.getfixturevalue(stack)
    table = replacements.table()
    missing = sorted({r.type for r in rendered.resources if r.custom} - set(table["types"]))
    assert missing == [], f"add these types to {replacements.DATA_FILE.name}: {missing}"
    for typ, entry in table["types"].items():
        assert entry["source"]["from"] in table["sources"], typ


def test_crd_chart_list_matches_the_chart_archives(charts_dir):
    """The charts listed as carrying CRDs in `crds/` are exactly the archives that have such a folder."""
    import yaml

    with_crds, names = set(), set()
    for archive in sorted(charts_dir.glob("*.tgz")):
        with tarfile.open(archive) as tar:
            members = tar.getnames()
            root = members[0].split("/")[0]
            name = yaml.safe_load(tar.extractfile(f"{root}/Chart.yaml"))["name"]
        names.add(name)
        # the chart's own crds/ or a subchart's (charts/<sub>/crds/), as Helm installs both
        if any(m.split("/")[1:2] == ["crds"] or (m.split("/")[1:2] == ["charts"] and m.split("/")[3:4] == ["crds"])
               for m in members if m.endswith((".yaml", ".yml", ".json"))):
            with_crds.add(name)
    listed = set(replacements.table()["helmChartsWithCrdsFolder"])
    assert listed == with_crds & names and listed


def test_a_chart_bump_with_crds_carries_the_manual_step():
    old = {"chart": "oci://public.ecr.aws/karpenter/karpenter", "version": "1.14.1"}
    [warning] = replacements.crd_warnings(old, {**old, "version": "1.15.0"})
    assert "`karpenter` 1.14.1 → 1.15.0" in warning and "--version 1.15.0" in warning
    assert replacements.crd_warnings(old, dict(old)) == []
    assert replacements.crd_warnings({"chart": "kueue", "version": "1"}, {"chart": "kueue", "version": "2"}) == []
