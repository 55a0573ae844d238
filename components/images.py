"""Image references: is one pinned, and is it from an allowed registry. One implementation of each rule for the
stack config's validators (components/config/), the admission policy's CEL (components/supply_chain.py, built from
the same constants) and the CrossGuard policies (policies/images.py)."""

from __future__ import annotations

import re
from collections.abc import Iterable

DIGEST_MARKER = "@sha256:"
# A tag at the end of the reference: ':' then the OCI tag grammar, with no '/' after it (so a registry port such
# as 'host:5000/img' is not a tag).
TAG_PATTERN = r":[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
DOCKER_HUB = "docker.io/"


def pin_problem(image: str) -> str | None:
    """Why an image reference is not pinned to a version, or None when it is (a non-latest tag or a digest)."""
    if image.endswith(":latest"):
        return "uses the mutable tag 'latest'"
    if DIGEST_MARKER in image or re.search(TAG_PATTERN, image):
        return None
    return "has no tag or digest (the runtime would pull 'latest')"


def spellings(prefix: str) -> list[str]:
    """A prefix as image references may spell it: Docker Hub's `docker.io/org/` is also `index.docker.io/org/` and
    the short `org/` (the node's containerd resolves unqualified names to Docker Hub)."""
    if prefix.startswith(DOCKER_HUB):
        rest = prefix[len(DOCKER_HUB):]
        return [prefix, f"index.{DOCKER_HUB}{rest}", rest]
    return [prefix]


def expand(prefixes: Iterable[str]) -> list[str]:
    """Every spelling of every prefix, in order, once: what the admission policy matches images against."""
    return list(dict.fromkeys(s for p in prefixes for s in spellings(p)))


def registry_allowed(image: str, prefixes: Iterable[str]) -> bool:
    """Whether the image starts with one of the prefixes, in any of their spellings (as admission matches it)."""
    return any(image.startswith(p) for p in expand(prefixes))
