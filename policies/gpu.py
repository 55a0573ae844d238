"""GPU rules: GPU requests, GPU capacity (node groups, NodePools), sharing, culling, quotas."""

from __future__ import annotations

POLICIES: list = []
