"""Egress rules: default deny, no internet for training pods, NetworkPolicies only where enforced."""

from __future__ import annotations

POLICIES: list = []
