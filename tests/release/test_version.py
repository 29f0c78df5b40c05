"""release/version.py on a copy of the files that repeat the version: set, check and cut."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COPIED = [
    "VERSION",
    "CHANGELOG.md",
    "release/version.py",
    "server/totpd/__init__.py",
    "clients/python/pyproject.toml",
    "clients/python/README.md",
    "clients/node/package.json",
    "clients/node/package-lock.json",
    "clients/node/README.md",
    "clients/java/pom.xml",
    "clients/java/README.md",
    "clients/go/README.md",
]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for name in COPIED:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


def version_py(tree: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(tree / "release/version.py"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_repository_agrees_with_version() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "release/version.py"), "check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr


def test_set_rewrites_every_copy(tree: Path) -> None:
    out = version_py(tree, "set", "0.3.0")
    # No CHANGELOG entry for 0.3.0 yet: set writes, check then names the missing entry.
    assert out.returncode == 1
    assert "CHANGELOG.md: no '## 0.3.0' entry" in out.stderr
    assert (tree / "VERSION").read_text() == "0.3.0\n"
    assert '__version__ = "0.3.0"' in (tree / "server/totpd/__init__.py").read_text()
    assert 'version = "0.3.0"' in (tree / "clients/python/pyproject.toml").read_text()
    lock = json.loads((tree / "clients/node/package-lock.json").read_text())
    assert lock["version"] == lock["packages"][""]["version"] == "0.3.0"
    assert json.loads((tree / "clients/node/package.json").read_text())["version"] == "0.3.0"
    pom = (tree / "clients/java/pom.xml").read_text()
    assert "<artifactId>totpd-client</artifactId>\n  <version>0.3.0</version>" in pom
    # Other <version> elements (plugins, dependencies) are left alone.
    assert "<version>3.4.0</version>" in pom
    assert "dev.totpd:totpd-client:0.3.0" in (tree / "clients/java/README.md").read_text()
    assert "clients/go@v0.3.0" in (tree / "clients/go/README.md").read_text()
    assert "totpd-client==0.3.0" in (tree / "clients/python/README.md").read_text()
    assert "@totpd/client@0.3.0" in (tree / "clients/node/README.md").read_text()


def test_check_names_the_copy_that_disagrees(tree: Path) -> None:
    init = tree / "server/totpd/__init__.py"
    init.write_text(init.read_text().replace('"0.1.0"', '"0.1.1"'))
    out = version_py(tree, "check")
    assert out.returncode == 1
    assert "server/totpd/__init__.py: 0.1.1" in out.stderr
    assert "make version" in out.stderr


def test_cut_releases_the_unreleased_entry(tree: Path) -> None:
    out = version_py(tree, "cut", "0.2.0")
    assert out.returncode == 0, out.stderr
    changelog = (tree / "CHANGELOG.md").read_text()
    unreleased = changelog.index("\n## Unreleased\n")
    entry = changelog.index("\n## 0.2.0 (")
    assert unreleased < entry < changelog.index("\n## 0.1.0")
    # The new Unreleased heading is empty: what was under it now belongs to 0.2.0.
    assert changelog[unreleased:entry].strip() == "## Unreleased"
    assert version_py(tree, "cut", "0.2.0").returncode != 0  # never twice


@pytest.mark.parametrize("bad", ["1.2", "v1.2.3", "01.2.3", "1.2.3+build"])
def test_set_refuses_a_version_that_is_not_semver(tree: Path, bad: str) -> None:
    out = version_py(tree, "set", bad)
    assert out.returncode != 0
    assert (tree / "VERSION").read_text() == "0.1.0\n"
