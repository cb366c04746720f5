"""The book's JavaScript: pinned npm tarballs, checked and extracted locally."""

from __future__ import annotations

import base64
import hashlib
import io
import posixpath
import re
import tarfile

import pytest

from explodebook.book import assets
from explodebook.book.assets import PACKAGES, Package, install
from explodebook.book.sources import read_config


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


def test_a_directory_can_be_copied_to_several_places(fake, tmp_path, monkeypatch):
    package, data = fake
    twice = Package(package.name, package.version, package.integrity,
                    {"package/dist/": ("fake/dist/", "copy/")}, skip=package.skip)
    monkeypatch.setattr(assets, "fetch", lambda p: data)
    out = install(tmp_path / "vendor", (twice,))
    for folder in ("fake/dist", "copy"):
        assert (out / folder / "a.woff").read_bytes() == b"font"
        assert (out / folder / "sub/b.js").read_bytes() == b"b"
        assert not (out / folder / "skip.map").exists()


def test_a_changed_table_replaces_an_installed_tree(fake, tmp_path, monkeypatch):
    """Same versions, files extracted elsewhere: not left as it was."""
    package, data = fake
    monkeypatch.setattr(assets, "fetch", lambda p: data)
    out = install(tmp_path / "vendor", (package,))
    moved = Package(package.name, package.version, package.integrity,
                    {"package/lib.js": "moved/lib.js"})
    install(out, (moved,))
    assert (out / "moved/lib.js").is_file()
    assert not (out / "fake/lib.js").exists()


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
    from pathlib import Path

    config = read_config(Path(__file__).resolve().parents[1])
    sphinx = config["sphinx"]["config"]
    targets = {t for p in PACKAGES for t in p.extract.values()}
    assert sphinx["html_static_path"] == ["_vendor"]
    assert f"{sphinx['mathjax_path']}" in targets
    for script in sphinx["nb_ipywidgets_js"]:
        assert script in targets | {"require-config.js"}, script
    for package in PACKAGES:
        assert package.tarball_url.startswith("https://registry.npmjs.org/")
        assert package.integrity.startswith("sha512-")


# -- the widget manager's icon fonts ----------------------------------------------

HTML_MANAGER = next(p for p in PACKAGES if p.name == "@jupyter-widgets/html-manager")


@pytest.fixture(scope="module")
def widget_manager(tmp_path_factory):
    """The real html-manager package, vendored as the book does (no browser)."""
    try:
        assets.fetch(HTML_MANAGER)  # the npm cache, or the registry once
    except OSError as err:
        pytest.skip(f"the html-manager tarball is not available: {err}")
    return install(tmp_path_factory.mktemp("vendor"), (HTML_MANAGER,))


def amd_modules(bundle: str) -> dict[str, str]:
    """``{module id: its code}`` for every named ``define`` of an AMD bundle."""
    starts = [(m.start(), m.group(1)) for m in re.finditer(r'define\("([^"]+)",\s*\[', bundle)]
    ends = [start for start, _ in starts[1:]] + [len(bundle)]
    return {name: bundle[start:end] for (start, name), end in zip(starts, ends)}


def test_the_widget_icon_fonts_are_where_the_bundle_asks_for_them(widget_manager):
    """Every file a module of embed-amd.js loads by URL is vendored there.

    webpack resolves a module's asset URLs (the Font Awesome fonts of its
    stylesheets, ``__webpack_require__.p + "<hash>.woff2"``) against its
    publicPath, which this bundle sets to the folder of the module's own
    URL as RequireJS gives it (``module.uri``): baseUrl + module id +
    ".js", baseUrl being the book's _static/ (REQUIRE_CONFIG), that is the
    vendored tree's root (``html_static_path: [_vendor]``).
    """
    assert '+ "_static/"' in assets.REQUIRE_CONFIG  # baseUrl: the vendored tree
    bundle = (widget_manager / "html-manager" / "embed-amd.js").read_text()
    expected: dict[str, set[str]] = {}
    for module, code in amd_modules(bundle).items():
        files = set(re.findall(r'\.p\+"([^"]+)"', code))
        if not files:
            continue
        # the publicPath rule above, as the module states it
        assert re.search(r"new URL\(\w+\.uri,document\.location\)", code), module
        folder = posixpath.dirname(module)
        expected[module] = {posixpath.join(folder, name) for name in files}
    # The module whose stylesheet comes last (browsers try its fonts first)
    # and the library the page loads first: 3 fonts, in 5 formats each (12
    # without SVG).
    manager = expected.get("@jupyter-widgets/html-manager", set())
    assert len([f for f in manager if f.endswith((".woff2", ".woff", ".ttf", ".eot"))]) == 12
    assert "@jupyter-widgets/html-manager/dist/libembed-amd" in expected
    missing = sorted(
        path for paths in expected.values() for path in paths
        if not (widget_manager / path).is_file()
    )
    assert missing == [], (
        f"{len(missing)} files the widget manager asks for are not vendored: {missing[:4]}"
    )
