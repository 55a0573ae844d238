"""One rule per judgement on images: the stack config accepts exactly the references the admission policy and the
policy pack accept (components/images.py)."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from components.config.types import PinnedImage
from components.images import pin_problem, registry_allowed

IMAGES = [
    "quay.io/jupyter/scipy-notebook:2026-08-03",
    "quay.io/jupyter/scipy-notebook:latest",
    "quay.io/jupyter/scipy-notebook",
    "registry.example.com:5000/team/img",                 # a port is not a tag
    "registry.example.com:5000/team/img:v1",
    "nvcr.io/nvidia/pytorch@sha256:" + "a" * 64,
    "nvcr.io/nvidia/pytorch:latest@sha256:" + "a" * 64,  # the digest pins it
    "nvcr.io/nvidia/pytorch@md5:abc",                    # not a digest admission knows
    "alpine:3.22",
    "alpine:LATEST",
]


def _config_accepts(image: str) -> bool:
    try:
        TypeAdapter(PinnedImage).validate_python(image)
        return True
    except ValidationError:
        return False


@pytest.mark.parametrize("image", IMAGES)
def test_config_and_admission_agree_on_pinning(image):
    assert _config_accepts(image) == (pin_problem(image) is None)


def test_the_pinning_rule_can_refuse():
    assert not _config_accepts("quay.io/jupyter/scipy-notebook:latest")
    assert not _config_accepts("registry.example.com:5000/team/img")


@pytest.mark.parametrize("image, allowed", [
    ("docker.io/kserve/sklearnserver:v0.20.0", True),
    ("index.docker.io/kserve/sklearnserver:v0.20.0", True),
    ("kserve/sklearnserver:v0.20.0", True),                # containerd resolves short names to Docker Hub
    ("docker.io/kservex/sklearnserver:v1", False),
    ("ghcr.io/kserve/sklearnserver:v1", False),
])
def test_registry_spellings(image, allowed):
    assert registry_allowed(image, ["docker.io/kserve/"]) == allowed
