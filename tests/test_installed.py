"""In ``nox -s wheels``: the suite ran against the installed wheel, not the source tree.

That session installs a repaired manylinux wheel into a fresh venv and runs the tests
from a copy of the tree without ``src/``, with ``EVENTMON_TEST_WHEEL`` naming the wheel.
Elsewhere these tests are skipped.
"""

from __future__ import annotations

import json
import os
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

import pytest

import eventmon
from eventmon.core import _native
from servers import ROOT

WHEEL = os.environ.get("EVENTMON_TEST_WHEEL")

pytestmark = pytest.mark.skipif(not WHEEL, reason="only in `nox -s wheels` (EVENTMON_TEST_WHEEL)")


def _site_packages() -> set[Path]:
    return {Path(sysconfig.get_paths()[k]).resolve() for k in ("purelib", "platlib")}


def test_eventmon_and_its_c_extension_come_from_site_packages() -> None:
    package = Path(eventmon.__file__).resolve().parent
    assert package.parent in _site_packages(), package
    assert not (ROOT / "src").exists(), "the tree under test must not hold src/"
    assert _native.ACCELERATOR == "c", _native.REASON
    assert _native.speedups is not None
    extension = Path(_native.speedups.__file__).resolve()
    assert extension.parent == package / "core"
    assert extension.name.startswith(f"_speedups.cpython-{sys.version_info.major}")
    # Nothing else on the path could shadow it: the one eventmon is the installed one.
    holders = {Path(p).resolve() for p in sys.path if (Path(p) / "eventmon").is_dir()}
    assert holders == {package.parent}


def test_the_installed_distribution_is_this_manylinux_wheel() -> None:
    assert WHEEL is not None
    wheel = Path(WHEEL)
    dist = metadata.distribution("eventmon")
    assert dist.version == eventmon.__version__
    origin = json.loads(dist.read_text("direct_url.json") or "{}")
    assert origin["url"] == wheel.as_uri()  # not editable, not from an index
    assert "dir_info" not in origin
    tags = [
        line.split(": ", 1)[1]
        for line in (dist.read_text("WHEEL") or "").splitlines()
        if line.startswith("Tag: ")
    ]
    assert tags
    assert all("manylinux" in t for t in tags), tags
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    assert all(t.startswith(f"{tag}-{tag}-") for t in tags), tags
    # One compiled file, for this interpreter: nothing stale came in through the sdist.
    compiled = [str(f) for f in dist.files or () if str(f).endswith(".so")]
    assert compiled == ["eventmon/core/_speedups" + sysconfig.get_config_var("EXT_SUFFIX")]
