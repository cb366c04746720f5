"""The book's JavaScript: pinned npm tarballs, checked and extracted locally."""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile

import pytest

from explodebook import assets
from explodebook.assets import PACKAGES, Package, install


def tarball(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


@pytest.fixture
def fake(monkeypatch, tmp_path):
    data = tarball({
        "package/lib.js": b"lib",
        "package/dist/a.woff": b"font",
        "package/dist/sub/b.js": b"b",
        "package/dist/skip.map": b"map",
    })
    package = Package("fake", "1.0.0", integrity(data),
                      {"package/lib.js": "fake/lib.js", "package/dist/": "fake/dist/"},
                      skip=("package/dist/skip",))
    monkeypatch.setenv("EXPLODEBOOK_NPM_CACHE", str(tmp_path / "cache"))
    return package, data


def test_install_extracts_files_and_directories_and_skips(fake, tmp_path, monkeypatch):
    package, data = fake
    calls = []
    monkeypatch.setattr(assets, "fetch", lambda p: calls.append(p) or data)
    out = install(tmp_path / "vendor", (package,))
    assert (out / "fake/lib.js").read_bytes() == b"lib"
    assert (out / "fake/dist/a.woff").read_bytes() == b"font"
    assert (out / "fake/dist/sub/b.js").read_bytes() == b"b"
    assert not (out / "fake/dist/skip.map").exists()
    assert "require.config" in (out / "require-config.js").read_text()
    # Nothing changed: the second call does not fetch again.
    install(tmp_path / "vendor", (package,))
    assert len(calls) == 1


def test_a_tarball_that_does_not_match_its_checksum_is_refused(fake):
    package, data = fake
    with pytest.raises(ValueError, match="does not match its pinned checksum"):
        assets._check(data + b"x", package)


def test_a_missing_file_is_reported(fake, tmp_path, monkeypatch):
    package, data = fake
    broken = Package(package.name, package.version, package.integrity,
                     {"package/nothere.js": "x.js"})
    monkeypatch.setattr(assets, "fetch", lambda p: data)
    with pytest.raises(ValueError, match="nothere.js"):
        install(tmp_path / "vendor", (broken,))


def test_fetch_uses_a_valid_cached_tarball_without_the_network(fake, monkeypatch):
    package, data = fake
    cache = assets._cache_dir()
    cache.mkdir(parents=True)
    (cache / "fake-1.0.0.tgz").write_bytes(data)

    def no_network(*args, **kwargs):
        raise AssertionError("the registry was contacted")

    monkeypatch.setattr(assets.urllib.request, "urlopen", no_network)
    assert assets.fetch(package) == data


def test_an_unreachable_registry_says_how_to_use_a_mirror(fake, monkeypatch):
    package, _ = fake

    def refuse(*args, **kwargs):
        raise OSError("connection refused")

    monkeypatch.setattr(assets.urllib.request, "urlopen", refuse)
    with pytest.raises(OSError, match="NPM_CONFIG_REGISTRY"):
        assets.fetch(package)


def test_the_pinned_packages_are_the_ones_the_config_points_at():
    import yaml
    from pathlib import Path

    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "_config.yml").read_text())
    sphinx = config["sphinx"]["config"]
    targets = {t for p in PACKAGES for t in p.extract.values()}
    assert sphinx["html_static_path"] == ["_vendor"]
    assert f"{sphinx['mathjax_path']}" in targets
    for script in sphinx["nb_ipywidgets_js"]:
        assert script in targets | {"require-config.js"}, script
    for package in PACKAGES:
        assert package.tarball_url.startswith("https://registry.npmjs.org/")
        assert package.integrity.startswith("sha512-")
