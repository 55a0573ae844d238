"""`make test-data` (tools/get_test_data.py): the pinned list matches the data the suite uses, and the download
fills the cache tests/upstream.py looks in, checked file by file, against a local HTTP server (no internet)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import re
import shutil
import threading
from pathlib import Path

import pytest
import yaml

from tests import upstream
from tools import get_test_data

RAW = "https://raw.githubusercontent.com/"


def manifest() -> dict:
    return yaml.safe_load(get_test_data.MANIFEST.read_text())


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server(tmp_path):
    """An HTTP server on loopback serving tmp_path/www: (its base URL, the folder)."""
    root = tmp_path / "www"
    root.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    httpd.shutdown()
    httpd.server_close()


def serve(root: Path, base: str, data: dict[str, Path]) -> dict:
    """Lay out the real pinned list on the server: each file with an upstream URL at that URL's path (so the upstream
    route is the one taken), every file under mirror/<kind>/<path>. The list, with its URLs pointing here."""
    pinned = manifest()
    for kind, entries in pinned.items():
        if kind not in upstream.DATA_KINDS:
            continue
        for entry in entries:
            source = data[kind] / entry["path"]
            targets = [root / "mirror" / kind / entry["path"]]
            if entry.get("url"):
                entry["url"] = entry["url"].replace(RAW, f"{base}/upstream/")
                targets.append(root / "upstream" / entry["url"][len(f"{base}/upstream/"):])
            for target in targets:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
    pinned["mirror"] = f"{base}/mirror"
    return pinned


def run(tmp_path: Path, pinned: dict, capsys) -> tuple[int, str, str]:
    path = tmp_path / "test-data.yaml"
    path.write_text(yaml.safe_dump(pinned))
    code = get_test_data.main(["--dest", str(tmp_path / "cache"), "--manifest", str(path), "--force"])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def data() -> dict[str, Path]:
    return {kind: upstream.data_dir(kind) for kind in upstream.DATA_KINDS}


def test_the_pinned_list_is_exactly_the_data_the_suite_uses(data):
    pinned = manifest()
    for kind, folder in data.items():
        files = {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                 for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".partial")}
        assert {e["path"]: e["sha256"] for e in pinned[kind]} == files, kind


def test_upstream_urls_are_pinned_to_full_commits():
    urls = [e["url"] for kind in upstream.DATA_KINDS for e in manifest()[kind] if e.get("url")]
    assert urls
    for url in urls:
        assert re.fullmatch(r"https://raw\.githubusercontent\.com/[\w.-]+/[\w.-]+/[0-9a-f]{40}/\S+", url), url


def test_download_fills_the_cache_upstream_py_finds_and_a_second_run_fetches_nothing(
        tmp_path, server, data, capsys, monkeypatch):
    base, root = server
    pinned = serve(root, base, data)
    code, out, err = run(tmp_path, pinned, capsys)
    assert (code, err) == (0, "")
    for kind, folder in data.items():
        assert f"{kind}: {len(pinned[kind])} files in {tmp_path / 'cache' / kind} ({len(pinned[kind])} downloaded)" \
            in out
        for entry in pinned[kind]:
            assert (tmp_path / "cache" / kind / entry["path"]).read_bytes() == (folder / entry["path"]).read_bytes()
    # Where tests/upstream.py looks third: the suite finds the cache.
    monkeypatch.setattr(upstream, "candidates", lambda kind: [tmp_path / "cache" / kind])
    assert {kind: upstream.locate(kind) for kind in data} == {kind: tmp_path / "cache" / kind for kind in data}
    # Idempotent: nothing downloaded again, even with the server gone.
    shutil.rmtree(root)
    code, out, err = run(tmp_path, pinned, capsys)
    assert (code, err) == (0, "") and out.count("(0 downloaded)") == len(data)


def test_a_file_whose_sha256_differs_is_refused_and_the_cache_not_made(tmp_path, server, data, capsys):
    base, root = server
    pinned = serve(root, base, data)
    entry = next(e for e in pinned["schemas"] if e["path"].startswith("crds/"))
    tampered = root / "mirror" / "schemas" / entry["path"]
    tampered.write_bytes(tampered.read_bytes().replace(b'"object"', b'"string"', 1))
    code, out, err = run(tmp_path, pinned, capsys)
    assert code == 1
    assert err == (f"error: schemas/{entry['path']}: sha256 mismatch for {base}/mirror/schemas/{entry['path']}: got "
                   f"{hashlib.sha256(tampered.read_bytes()).hexdigest()}, expected {entry['sha256']} "
                   "(tools/test-data.yaml); not saved\n")
    assert not (tmp_path / "cache" / "schemas").exists()              # the suite does not take it for the data
    assert not list((tmp_path / "cache").rglob(Path(entry["path"]).name))
    assert "charts: " in out                                            # the other kind is complete


def test_a_missing_file_is_named_and_the_next_run_fetches_only_it(tmp_path, server, data, capsys):
    base, root = server
    pinned = serve(root, base, data)
    missing = root / "mirror" / "charts" / "SOURCES.md"
    missing.unlink()
    code, out, err = run(tmp_path, pinned, capsys)
    assert code == 1
    assert err == f"error: charts/SOURCES.md: {base}/mirror/charts/SOURCES.md: HTTP 404 File not found\n"
    assert not (tmp_path / "cache" / "charts").exists()
    shutil.copyfile(data["charts"] / "SOURCES.md", missing)
    code, out, err = run(tmp_path, pinned, capsys)
    assert (code, err) == (0, "")
    assert f"charts: {len(pinned['charts'])} files in {tmp_path / 'cache' / 'charts'} (1 downloaded)" in out


def test_an_unreachable_upstream_falls_back_to_the_mirror_with_the_same_check(tmp_path, server, data, capsys):
    base, root = server
    pinned = serve(root, base, data)
    shutil.rmtree(root / "upstream")
    code, _, err = run(tmp_path, pinned, capsys)
    assert (code, err) == (0, "")


def test_without_a_mirror_the_files_no_upstream_url_serves_are_named(tmp_path, server, data, capsys):
    base, root = server
    pinned = serve(root, base, data)
    pinned["mirror"] = None
    code, _, err = run(tmp_path, pinned, capsys)
    assert code == 1
    lines = err.splitlines()
    assert len(lines) == sum(not e.get("url") for kind in data for e in pinned[kind])
    assert lines[0].endswith("no upstream URL serves these bytes and no mirror is set (set MLOPS_TEST_DATA_MIRROR "
                             "to a URL or file:// folder laid out as <kind>/<path>)")


def test_the_cache_is_where_upstream_py_looks_last(monkeypatch):
    for env, _ in upstream.DATA_KINDS.values():
        monkeypatch.delenv(env, raising=False)
    assert [upstream.candidates(kind)[-1] for kind in upstream.DATA_KINDS] == \
        [get_test_data.DEFAULT_DEST / kind for kind in upstream.DATA_KINDS]


def test_data_the_suite_already_finds_is_left_alone(tmp_path, capsys, data):
    assert get_test_data.main(["--dest", str(tmp_path / "cache")]) == 0
    assert capsys.readouterr().out == "".join(f"{kind}: found at {folder}, nothing to do\n"
                                              for kind, folder in data.items())
    assert not (tmp_path / "cache").exists()
