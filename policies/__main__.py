"""CrossGuard entry point: `pulumi preview --policy-pack policies`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import PolicyPack  # noqa: E402

from policies import POLICIES  # noqa: E402

PolicyPack(name="mlops-platform", policies=POLICIES)
