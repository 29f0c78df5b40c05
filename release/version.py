"""The project's one version: VERSION at the root, copied into every manifest.

    python release/version.py show              print VERSION
    python release/version.py check             every manifest agrees with VERSION (make lint)
    python release/version.py set X.Y.Z         write X.Y.Z to VERSION and every manifest
    python release/version.py cut X.Y.Z         set, and turn CHANGELOG's "Unreleased" into X.Y.Z

The Go client has no version in a file: its version is the git tag `clients/go/vX.Y.Z` (and
the module zip that `make dist` builds for it). Standard library only: it runs before any
virtualenv exists.
"""

from __future__ import annotations

import datetime
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VERSION_FILE = ROOT / "VERSION"
CHANGELOG = ROOT / "CHANGELOG.md"
# Semantic versioning 2.0 (a pre-release tag allowed, no build metadata).
SEMVER = re.compile(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?")


@dataclass(frozen=True)
class Copy:
    """One place that repeats the version: read it, or rewrite it."""

    path: str
    read: Callable[[str], str | None]
    write: Callable[[str, str], str]


def _pattern_copy(path: str, pattern: str) -> Copy:
    """A copy found by a regex whose group 1 is the version (its first match only)."""
    rx = re.compile(pattern, re.MULTILINE)

    def read(text: str) -> str | None:
        m = rx.search(text)
        return m.group(1) if m else None

    def write(text: str, version: str) -> str:
        m = rx.search(text)
        if not m:
            raise SystemExit(f"version: no version found in {path} (pattern {pattern!r})")
        return text[: m.start(1)] + version + text[m.end(1) :]

    return Copy(path, read, write)


def _json_copy(path: str, keys: list[list[str]]) -> Copy:
    """A JSON file with the version at each key path (npm's 2-space layout is kept)."""

    def dig(doc: object, key_path: list[str]) -> dict[str, object]:
        for key in key_path[:-1]:
            assert isinstance(doc, dict)
            doc = doc[key]
        assert isinstance(doc, dict)
        return doc

    def read(text: str) -> str | None:
        doc = json.loads(text)
        found = {str(dig(doc, k).get(k[-1])) for k in keys}
        return found.pop() if len(found) == 1 else "(differs: " + ", ".join(sorted(found)) + ")"

    def write(text: str, version: str) -> str:
        doc = json.loads(text)
        for k in keys:
            dig(doc, k)[k[-1]] = version
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"

    return Copy(path, read, write)


_V = r"(\d[0-9A-Za-z.-]*)"  # a version as written in a README (group 1)

COPIES = [
    _pattern_copy("server/totpd/__init__.py", r'^__version__ = "([^"]+)"'),
    _pattern_copy("clients/python/pyproject.toml", r'^version = "([^"]+)"'),
    _json_copy("clients/node/package.json", [["version"]]),
    _json_copy("clients/node/package-lock.json", [["version"], ["packages", "", "version"]]),
    _pattern_copy(
        "clients/java/pom.xml",
        r"<artifactId>totpd-client</artifactId>\s*<version>([^<]+)</version>",
    ),
    # The install lines at the top of the client READMEs name the version.
    _pattern_copy("clients/java/README.md", r"<version>([^<]+)</version>"),
    _pattern_copy("clients/java/README.md", r"dev\.totpd:totpd-client:" + _V),
    _pattern_copy("clients/go/README.md", r"go get github\.com/totpd/totpd/clients/go@v" + _V),
    _pattern_copy("clients/python/README.md", r"pip install totpd-client==" + _V),
    _pattern_copy("clients/node/README.md", r"npm install @totpd/client@" + _V),
]


def _changelog_entry(version: str) -> re.Pattern[str]:
    """The heading of a release entry: '## X.Y.Z' alone or followed by ' (date)'."""
    return re.compile(rf"^## {re.escape(version)}(?: |$)", re.MULTILINE)


def current() -> str:
    version = VERSION_FILE.read_text(encoding="utf-8").strip()
    if not SEMVER.fullmatch(version):
        raise SystemExit(f"version: VERSION holds {version!r}, not a semantic version X.Y.Z")
    return version


def check() -> int:
    version = current()
    wrong = []
    for c in COPIES:
        found = c.read((ROOT / c.path).read_text(encoding="utf-8"))
        if found != version:
            wrong.append(f"  {c.path}: {found or 'no version found'}")
    if not _changelog_entry(version).search(CHANGELOG.read_text(encoding="utf-8")):
        wrong.append(f"  CHANGELOG.md: no '## {version}' entry")
    if wrong:
        print(f"version: VERSION is {version}, but:", *wrong, sep="\n", file=sys.stderr)
        print("run 'make version' to copy VERSION everywhere", file=sys.stderr)
        return 1
    print(f"version: {version} in VERSION and all {len(COPIES)} copies")
    return 0


def set_version(version: str) -> None:
    if not SEMVER.fullmatch(version):
        raise SystemExit(f"version: {version!r} is not a semantic version X.Y.Z")
    VERSION_FILE.write_text(version + "\n", encoding="utf-8")
    for c in COPIES:
        path = ROOT / c.path
        text = path.read_text(encoding="utf-8")
        new = c.write(text, version)
        if new != text:
            path.write_text(new, encoding="utf-8")
            print(f"version: {c.path} -> {version}")


def cut_changelog(version: str) -> None:
    """'## Unreleased' becomes '## X.Y.Z (date)' under a new, empty '## Unreleased'."""
    text = CHANGELOG.read_text(encoding="utf-8")
    if _changelog_entry(version).search(text):
        raise SystemExit(f"version: CHANGELOG.md already has a '## {version}' entry")
    if "\n## Unreleased\n" not in text:
        raise SystemExit("version: CHANGELOG.md has no '## Unreleased' heading to release")
    today = datetime.datetime.now(datetime.UTC).date().isoformat()
    text = text.replace("\n## Unreleased\n", f"\n## Unreleased\n\n## {version} ({today})\n", 1)
    CHANGELOG.write_text(text, encoding="utf-8")
    print(f"version: CHANGELOG.md: Unreleased -> {version} ({today})")


def main(argv: list[str]) -> int:
    match argv:
        case ["show"]:
            print(current())
            return 0
        case ["check"]:
            return check()
        case ["set", version]:
            set_version(version)
            return check()
        case ["cut", version]:
            cut_changelog(version)
            set_version(version)
            return check()
        case _:
            print(__doc__, file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
