"""What a user gets from the package index: the sdist's files and the README's links."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
import unicodedata
from pathlib import Path

import pytest

from servers import ROOT

DOCS_SITE = "https://eventmon.readthedocs.io/en/latest/"
REPO_FILES = "https://github.com/eventmon/eventmon/blob/main/"


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> tarfile.TarFile:
    """The sdist built from a copy of the tree (no build artefacts, no stale egg-info)."""
    if not (ROOT / "src").is_dir():
        # `nox -s wheels` runs the suite against the installed wheel, from a copy of
        # the tree without src/: there is no source to pack there.
        pytest.skip("no source tree (the installed-wheel run)")
    pytest.importorskip("build")
    if not (ROOT / "src").is_dir():
        pytest.skip("no src/ here: this run tests an installed wheel (nox -s wheels)")
    work = tmp_path_factory.mktemp("sdist")
    tree = work / "tree"
    shutil.copytree(
        ROOT,
        tree,
        ignore=shutil.ignore_patterns(
            ".git", ".nox", "build", "dist", "site", "*.egg-info", "__pycache__", "*.so", ".*cache"
        ),
    )
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--no-isolation", "-o", str(work), str(tree)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (archive,) = work.glob("eventmon-*.tar.gz")
    return tarfile.open(archive)


def sdist_names(sdist: tarfile.TarFile) -> set[str]:
    return {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}


def test_sdist_has_the_licence_the_c_source_and_the_package_data(sdist: tarfile.TarFile) -> None:
    names = sdist_names(sdist)
    static = {
        p.relative_to(ROOT).as_posix() for p in (ROOT / "src/eventmon/dashboard/static").iterdir()
    }
    assert static, "the dashboard has static files"
    needed = {
        "LICENSE",
        "CHANGELOG.md",
        "README.md",
        "pyproject.toml",
        "setup.py",
        "src/eventmon/core/_speedups.c",
        "src/eventmon/core/_speedups.pyi",
        "src/eventmon/py.typed",
        *static,
    }
    assert needed <= names, sorted(needed - names)
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "src/eventmon").rglob("*.py")}
    assert modules <= names, sorted(modules - names)


def test_sdist_ships_no_tests_and_no_build_artefacts(sdist: tarfile.TarFile) -> None:
    # Decided: the tests read docs/ and examples/ too, so they run from a clone, not the sdist.
    names = sdist_names(sdist)
    assert not [n for n in names if n.startswith(("tests/", "docs/", "benchmarks/"))]
    assert not [n for n in names if n.endswith((".so", ".pyc"))]


def test_sdist_metadata_declares_the_licence(sdist: tarfile.TarFile) -> None:
    member = next(m for m in sdist.getmembers() if m.name.endswith("/PKG-INFO"))
    extracted = sdist.extractfile(member)
    assert extracted is not None
    pkg_info = extracted.read().decode()
    assert "License-Expression: MIT" in pkg_info
    assert "License-File: LICENSE" in pkg_info
    assert f"Project-URL: Documentation, {DOCS_SITE}" in pkg_info
    assert f"Project-URL: Changelog, {REPO_FILES}CHANGELOG.md" in pkg_info
    assert "Copyright (c) 2026 eventmon developers" in (ROOT / "LICENSE").read_text()


# -- README links: the README is the package index page, where relative links break --------

_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|<(https?://[^>]+)>|^\[[^\]]+\]:\s*(\S+)", re.M)
_FENCE = re.compile(r"^(```|~~~)")


def markdown_links(text: str) -> list[str]:
    # links inside code spans are not links
    prose = "\n".join(re.sub(r"`[^`]*`", "", line) for line in _outside_code(text.splitlines()))
    return [next(g for g in m.groups() if g) for m in _LINK.finditer(prose)]


def _outside_code(lines: list[str]) -> list[str]:
    out, fenced = [], False
    for line in lines:
        if _FENCE.match(line.lstrip()):
            fenced = not fenced
            continue
        if not fenced:
            out.append(line)
    return out


def slug(heading: str) -> str:
    """The anchor mkdocs (Python-Markdown's toc extension) gives a heading."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"[`*]", "", text)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def page_anchors(page: Path) -> set[str]:
    headings = [
        line.lstrip("#").strip()
        for line in _outside_code(page.read_text().splitlines())
        if re.match(r"#{1,6} ", line)
    ]
    return {slug(h) for h in headings}


def docs_page(url: str) -> tuple[Path, str]:
    """The docs/ source of a docs-site URL (mkdocs directory URLs), and the anchor."""
    path, _, anchor = url.removeprefix(DOCS_SITE).partition("#")
    path = path.strip("/")
    candidates = [ROOT / "docs" / f"{path}.md", ROOT / "docs" / path / "index.md"]
    if not path:
        candidates = [ROOT / "docs" / "index.md"]
    found = next((c for c in candidates if c.is_file()), None)
    assert found is not None, f"{url}: no docs page {candidates[0].relative_to(ROOT)}"
    return found, anchor


def test_slug_matches_mkdocs() -> None:
    assert slug("The C accelerator") == "the-c-accelerator"
    assert slug("`eventmon forecast`") == "eventmon-forecast"
    assert slug("Several workers (gunicorn, `uvicorn --workers`)") == (
        "several-workers-gunicorn-uvicorn-workers"
    )


def test_readme_links_are_absolute_and_point_at_real_pages() -> None:
    links = markdown_links((ROOT / "README.md").read_text())
    assert links, "the README links to the docs"
    for url in links:
        assert url.startswith("https://"), f"README link {url!r} breaks on the package index"
        if url.startswith(DOCS_SITE):
            page, anchor = docs_page(url)
            if anchor:
                assert anchor in page_anchors(page), f"{url}: no heading #{anchor} in {page.name}"
        elif url.startswith(REPO_FILES):
            assert (ROOT / url.removeprefix(REPO_FILES)).is_file(), url


def test_link_checker_catches_relative_and_dangling_links() -> None:
    text = "see [a](docs/alerts.md) and [b](https://eventmon.readthedocs.io/en/latest/nope/)"
    relative, dangling = markdown_links(text)
    assert not relative.startswith("https://")
    with pytest.raises(AssertionError, match="no docs page"):
        docs_page(dangling)
    page, anchor = docs_page(DOCS_SITE + "design/#the-c-accelerator")
    assert anchor in page_anchors(page)
    assert "no-such-heading" not in page_anchors(page)
