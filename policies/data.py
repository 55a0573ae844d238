"""Data-protection rules: encryption, public access, deletion protection of data stores."""

from __future__ import annotations

POLICIES: list = []
