"""The book's JavaScript, served from the book itself instead of CDNs.

The rendered book needs three pieces of JavaScript that Sphinx and MyST-NB
normally load from third-party CDNs: MathJax (the equations), RequireJS and
the Jupyter widgets HTML manager (widgets in static pages). Readers on
networks that block or slow those CDNs would get a book without equations
and widgets, so the build fetches them from the npm registry instead, at
pinned versions whose checksums are checked, and ``_config.yml`` points
Sphinx and MyST-NB at the local copies (``html_static_path: [_vendor]``).

Nothing here is committed: ``make book`` runs
``python -m explodebook.book.assets _vendor`` first, which downloads each
package once (to ``~/.cache/explodebook/npm``, or ``$EXPLODEBOOK_NPM_CACHE``)
and extracts what the book uses. It needs only the Python standard library
and access to the npm registry (``$NPM_CONFIG_REGISTRY`` if set).
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import sys
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Package", "PACKAGES", "fetch", "install"]

_REGISTRY = "https://registry.npmjs.org"


@dataclass(frozen=True)
class Package:
    """One npm package the book serves itself.

    Attributes:
        name: the npm package name.
        version: the pinned version.
        integrity: the registry's ``dist.integrity`` (``sha512-<base64>``):
            the download must match it.
        extract: ``{path in the tarball: path under the output directory}``;
            a path ending in ``/`` copies that directory. A tuple of paths
            puts a copy in each.
        skip: prefixes (in the tarball) not to copy out of an extracted
            directory.
    """

    name: str
    version: str
    integrity: str
    extract: dict[str, str | tuple[str, ...]]
    skip: tuple[str, ...] = ()

    @property
    def tarball_url(self) -> str:
        registry = os.environ.get("NPM_CONFIG_REGISTRY", _REGISTRY).rstrip("/")
        base = self.name.rsplit("/", 1)[-1]
        return f"{registry}/{self.name}/-/{base}-{self.version}.tgz"


#: What the book serves from ``_static``. The versions are the ones MyST-NB
#: 1.x and Sphinx 7 load from CDNs (MathJax 3, html-manager 1.0.6), so
#: behaviour does not change, only where the files come from.
PACKAGES: tuple[Package, ...] = (
    Package(
        name="mathjax",
        version="3.2.2",
        integrity="sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/"
        "FEsPsjKPZGJvtRZM1vO+geW0OhGw==",
        # The combined TeX/MathML-to-HTML component, and the parts it loads
        # on demand: fonts, TeX extensions, the menu and accessibility.
        extract={
            "package/es5/tex-mml-chtml.js": "mathjax/tex-mml-chtml.js",
            "package/es5/input/": "mathjax/input/",
            "package/es5/output/chtml/": "mathjax/output/chtml/",
            "package/es5/ui/": "mathjax/ui/",
            "package/es5/a11y/": "mathjax/a11y/",
            "package/es5/sre/": "mathjax/sre/",
            "package/es5/adaptors/": "mathjax/adaptors/",
            "package/LICENSE": "mathjax/LICENSE",
        },
    ),
    Package(
        name="requirejs",
        version="2.3.7",
        integrity="sha512-DouTG8T1WanGok6Qjg2SXuCMzszOo0eHeH9hDZ5Y4x8Je+9JB38HdTLT4/"
        "VA8OaUhBa0JPVHJ0pyBkM1z+pDsw==",
        extract={"package/require.js": "require.js"},
    ),
    Package(
        name="@jupyter-widgets/html-manager",
        version="1.0.6",
        integrity="sha512-+Mn+Ra8wyIHrYaUpfmf9A3dsLkt/NuwzPQN8sthdxBD35VV5cOJbpmgMhNR27n/"
        "rmP3mKyEe0PWCJrtZrXTXDQ==",
        # The bundle, and the icon fonts (Font Awesome) of its stylesheets.
        # The bundle is several AMD modules, each with its own copy of the
        # stylesheets, and each resolves the fonts' URLs (webpack's
        # publicPath) against the folder of its own module URL: RequireJS'
        # baseUrl (_static/, REQUIRE_CONFIG) + module id + ".js". So
        # "@jupyter-widgets/html-manager/dist/libembed-amd" asks for them in
        # @jupyter-widgets/html-manager/dist/, and
        # "@jupyter-widgets/html-manager", whose stylesheet comes last (so
        # browsers try its fonts first), in @jupyter-widgets/: a copy in
        # each (tests/test_assets.py reads the bundle and checks).
        extract={
            "package/dist/embed-amd.js": "html-manager/embed-amd.js",
            "package/dist/": ("@jupyter-widgets/html-manager/dist/", "@jupyter-widgets/"),
        },
        skip=("package/dist/embed", "package/dist/libembed", "package/dist/106.",
              "package/dist/330."),
    ),
)

#: Loaded between RequireJS and the widget manager (see ``_config.yml``):
#: resolves AMD modules under the book's ``_static``, whatever the depth of
#: the page (Sphinx writes the way back to the root on ``<html>``).
REQUIRE_CONFIG = """\
// Written by explodebook.book.assets: the widget manager's modules and fonts are
// under the book's own _static, not on a CDN.
require.config({
  baseUrl: (document.documentElement.dataset.content_root || "./") + "_static/",
});
// The widget manager typesets labels with MathJax 2's API,
// MathJax.Hub.Queue(["Typeset", MathJax.Hub, element]), whenever
// window.MathJax exists; the book loads MathJax 3, which has no Hub, so
// that call threw "Cannot read properties of undefined (reading 'Queue')".
// Give every object assigned to window.MathJax (the page's configuration,
// then MathJax 3 itself) a hidden Hub whose Queue typesets with MathJax 3.
(function () {
  function withHub(mathjax) {
    if (mathjax && typeof mathjax === "object" && !("Hub" in mathjax)) {
      Object.defineProperty(mathjax, "Hub", {
        configurable: true,
        enumerable: false,
        value: {
          Queue: function () {
            for (var i = 0; i < arguments.length; i++) {
              var job = arguments[i];
              var mj = window.MathJax;
              if (Array.isArray(job) && job[0] === "Typeset" && mj && mj.typesetPromise) {
                mj.typesetPromise([job[2]]).catch(function () {});
              }
            }
          },
        },
      });
    }
    return mathjax;
  }
  var current = withHub(window.MathJax);
  Object.defineProperty(window, "MathJax", {
    configurable: true,
    get: function () { return current; },
    set: function (value) { current = withHub(value); },
  });
})();
"""


def _cache_dir() -> Path:
    default = Path.home() / ".cache" / "explodebook" / "npm"
    return Path(os.environ.get("EXPLODEBOOK_NPM_CACHE", default))


def _check(data: bytes, package: Package) -> None:
    algorithm, _, expected = package.integrity.partition("-")
    digest = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
    if digest != expected:
        raise ValueError(
            f"{package.name}@{package.version}: the download does not match its pinned "
            f"checksum ({package.integrity}); got {algorithm}-{digest}"
        )


def fetch(package: Package, timeout: float = 120.0) -> bytes:
    """The package's tarball, from the local cache or the npm registry.

    Raises:
        ValueError: the tarball does not match ``package.integrity``.
        OSError: the registry cannot be reached (the message says how to
            point at another registry).
    """
    cached = _cache_dir() / f"{package.name.replace('/', '__')}-{package.version}.tgz"
    if cached.is_file():
        data = cached.read_bytes()
        try:
            _check(data, package)
            return data
        except ValueError:
            cached.unlink()  # a truncated earlier download: fetch again
    url = package.tarball_url
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            data = response.read()
    except OSError as err:
        raise OSError(
            f"could not download {url} ({err}). The book's JavaScript comes from the "
            "npm registry; set NPM_CONFIG_REGISTRY to a mirror if this one is blocked."
        ) from err
    _check(data, package)
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(data)
    return data


def _targets(package: Package) -> list[tuple[str, str]]:
    """``(path in the tarball, path under the output)``, one pair per copy."""
    return [
        (source, target)
        for source, targets in package.extract.items()
        for target in ((targets,) if isinstance(targets, str) else targets)
    ]


def _extract(data: bytes, package: Package, out: Path) -> int:
    copied = 0
    root = out.resolve()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar.getmembers():
            if not member.isfile():
                continue
            for source, target in _targets(package):
                if source.endswith("/") and member.name.startswith(source):
                    if any(member.name.startswith(s) for s in package.skip):
                        continue
                    destination = out / target / member.name[len(source):]
                elif member.name == source:
                    destination = out / target
                else:
                    continue
                # Paths come from our own table, never from the tarball's
                # names alone, but check anyway: nothing may land outside.
                if root not in destination.resolve().parents:
                    raise ValueError(f"{member.name!r} would be written outside {out}")
                destination.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as src, open(destination, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                copied += 1
    missing = [
        source for source, target in _targets(package)
        if not source.endswith("/") and not (out / target).is_file()
    ]
    if missing:
        raise ValueError(f"{package.name}@{package.version} has no {missing}")
    return copied


def install(out: str | Path = "_vendor", packages: tuple[Package, ...] = PACKAGES) -> Path:
    """Put the book's JavaScript under ``out`` (replacing what was there).

    A stamp file records the versions and what is extracted where, so a
    second call with nothing changed returns at once.

    Returns:
        the output directory.
    """
    out = Path(out)
    stamp = out / ".versions"
    wanted = "\n".join(f"{p.name}@{p.version} {p.integrity}" for p in packages)
    # A changed table (same versions) must not leave an older tree in place.
    layout = repr([(p.extract, p.skip) for p in packages]) + REQUIRE_CONFIG
    wanted += "\n" + hashlib.sha256(layout.encode()).hexdigest() + "\n"
    if stamp.is_file() and stamp.read_text() == wanted:
        return out
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for package in packages:
        _extract(fetch(package), package, out)
    (out / "require-config.js").write_text(REQUIRE_CONFIG)
    stamp.write_text(wanted)
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) > 1 or (args and args[0].startswith("-")):
        print("usage: python -m explodebook.book.assets [OUTPUT_DIR (default _vendor)]", file=sys.stderr)
        return 2
    print(install(args[0] if args else "_vendor"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
