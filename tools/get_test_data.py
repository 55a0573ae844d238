"""Fill `.cache/test-data/<kind>` with the suite's upstream test data (`make test-data`), from pinned URLs.

`tools/test-data.yaml` lists every file of each kind (`schemas`, `charts`) with its sha256: the exact bytes the suite
is checked against. A file with a `url` is a byte-for-byte copy of an upstream file and is fetched from that URL,
pinned to a full git commit. The others (CRD schemas converted to JSON Schema, chart archives packed from tagged
sources, the data's own READMEs) are not served byte-identical by any upstream URL, so they come from the mirror:
`MLOPS_TEST_DATA_MIRROR` (a URL or `file://` folder laid out like `../shared`: `<kind>/<path>`), else the file's
`mirror:` entry. Every download is checked against its sha256 before it is kept; a mismatch is refused.

Idempotent: a kind the suite already finds (its environment variable, `../shared`, or a complete cache) is left alone,
and a file already in the cache with the right sha256 is not fetched again. A kind is filled in a `.partial` folder
renamed into place once complete, so an interrupted run never leaves a cache the suite would take for complete.
Usage: `python tools/get_test_data.py [--dest DIR] [--manifest FILE] [--force]`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import urllib.error
import urllib.request
from pathlib import Path

import yaml

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

from tests.upstream import CACHE_DIR, DATA_KINDS, locate  # noqa: E402  (the suite's own lookup decides what is found)

MANIFEST = Path(__file__).with_name("test-data.yaml")
DEFAULT_DEST = CACHE_DIR / "test-data"          # where tests/upstream.py looks last
MIRROR_ENV = "MLOPS_TEST_DATA_MIRROR"
TIMEOUT_S = 60


class FetchError(Exception):
    """A file that could not be fetched or did not match its pinned sha256."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def source_urls(kind: str, entry: dict, mirror: str | None) -> list[str]:
    """Where a file is fetched from, in order: its upstream URL if it has one, then the mirror (same sha256 check)."""
    urls = [entry["url"]] if entry.get("url") else []
    if mirror:
        urls.append(f"{mirror.rstrip('/')}/{kind}/{entry['path']}")
    if not urls:
        raise FetchError(f"{kind}/{entry['path']}: no upstream URL serves these bytes and no mirror is set "
                         f"(set {MIRROR_ENV} to a URL or file:// folder laid out as <kind>/<path>)")
    return urls


def fetch(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:  # noqa: S310 (pinned https/file URLs)
            return response.read()
    except urllib.error.HTTPError as exc:
        raise FetchError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise FetchError(f"{url}: {getattr(exc, 'reason', exc)}") from exc


def fetch_file(kind: str, entry: dict, dest: Path, mirror: str | None) -> bool:
    """Put one file at dest/<path> if it is not there with the right sha256. True when it was downloaded."""
    target = dest / entry["path"]
    if target.is_file() and sha256(target.read_bytes()) == entry["sha256"]:
        return False
    failures = []
    for url in source_urls(kind, entry, mirror):
        try:
            data = fetch(url)
        except FetchError as exc:
            failures.append(str(exc))
            continue
        if sha256(data) != entry["sha256"]:
            raise FetchError(f"{kind}/{entry['path']}: sha256 mismatch for {url}: got {sha256(data)}, "
                             f"expected {entry['sha256']} (tools/test-data.yaml); not saved")
        break
    else:
        raise FetchError(f"{kind}/{entry['path']}: {'; '.join(failures)}")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.write_bytes(data)
    partial.replace(target)
    return True


def fill(kind: str, entries: list[dict], dest: Path, mirror: str | None) -> list[str]:
    """Fetch every file of a kind into dest/<kind>. The problems, one line each (empty: complete).

    The work happens in dest/.<kind>.partial (seeded with what dest/<kind> already holds), renamed to dest/<kind> only
    when every file is there and checked: tests/upstream.py never takes an incomplete folder for the data, and the
    next run fetches only what is still missing."""
    final, work = dest / kind, dest / f".{kind}.partial"
    if final.is_dir() and not work.exists():
        final.rename(work)
    problems, fetched = [], 0
    for entry in entries:
        try:
            fetched += fetch_file(kind, entry, work, mirror)
        except FetchError as exc:
            problems.append(str(exc))
    if problems:
        return problems
    if final.exists():
        shutil.rmtree(final)            # made by hand after an interrupted run; the checked copy replaces it
    work.rename(final)
    print(f"{kind}: {len(entries)} files in {final} ({fetched} downloaded)")
    return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST, help="folder holding <kind>/")
    parser.add_argument("--manifest", type=Path, default=MANIFEST)
    parser.add_argument("--force", action="store_true", help="fill the cache even where the suite finds data")
    args = parser.parse_args(argv)
    manifest = yaml.safe_load(args.manifest.read_text())
    mirror = os.environ.get(MIRROR_ENV) or manifest.get("mirror")
    problems = []
    for kind in DATA_KINDS:
        found = locate(kind)
        if found is not None and not args.force and found != args.dest / kind:
            print(f"{kind}: found at {found}, nothing to do")
            continue
        problems += fill(kind, manifest[kind], args.dest, mirror)
    for line in problems:
        print(f"error: {line}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
