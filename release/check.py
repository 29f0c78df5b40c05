"""`make release-check`: install every artifact in dist/ the way its users will, and use it.

    python release/check.py [--keep] [python|sdist|node|java|go ...]

1. dist/SHA256SUMS matches the files.
2. python: a fresh virtualenv gets `pip install dist/totpd-V-*.whl dist/totpd_client-V-*.whl`;
   `totpd serve --dev` from that virtualenv listens on a free loopback port, and a script
   (release/smoke/python) does Enroll -> ConfirmEnrollment -> Verify through the installed client.
   Every other check talks to this server.
3. sdist: another fresh virtualenv builds a wheel from dist/totpd-V.tar.gz with pip (the C core
   compiled from source in pip's isolated build environment) and computes an RFC 6238 test
   vector with the core it compiled.
4. node: a scratch npm project runs `npm install dist/totpd-client-V.tgz`; tsc compiles an ES
   module example (import) and a CommonJS one (require), each against the declarations its
   module system resolves to; Node runs both.
5. java: a scratch Maven project depends on dev.totpd:totpd-client:V from dist/maven (a
   file-based repository; a copy of that artifact left in the local repository is purged
   first) and runs its example; the jar on its classpath must be dist's.
6. go: a scratch module requires github.com/totpd/totpd/clients/go vV through
   GOPROXY=file://dist/goproxy (other modules: the module cache's download directory, then the
   usual proxy) in an empty module cache; its go.sum must record the hash make dist printed.

A missing toolchain (node/npm, java/mvn, go) skips its check locally and fails with CI=true.
The last line reads "release-check: N passed, N failed[, N skipped]".
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from check_steps import (
    DIST,
    ROOT,
    SMOKE,
    CheckError,
    MissingToolError,
    Scratch,
    check_sums,
    clean_env,
    install_wheels,
    make_venv,
    need,
    one,
    run,
    running_server,
    say,
    sha256,
)

GO_MODULE = "github.com/totpd/totpd/clients/go"
CHECKS = ("python", "sdist", "node", "java", "go")
CI = os.environ.get("CI") == "true"


def check_python(scratch: Scratch, venv: Path, target: str) -> None:
    work = scratch.root / "python-flow"
    work.mkdir()
    script = shutil.copy(SMOKE / "python" / "flow.py", work)
    say(run(scratch, "python", [str(venv / "bin/python"), str(script), target], work).strip())


# --- sdist: the C core compiled from source on a clean environment -------------------

RFC6238_SHA1_AT_59 = "94287082"  # RFC 6238 appendix B: T = 59 s, SHA-1, 8 digits


def check_sdist(scratch: Scratch, venv_unused: Path, target_unused: str) -> None:
    sdist = one(f"totpd-{scratch.version}.tar.gz")
    venv = make_venv(scratch, "sdist")
    py = str(venv / "bin/python")
    out = scratch.root / "sdist-wheel"
    run(
        scratch,
        "sdist",
        [py, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(sdist)],
        out.parent,
    )
    wheels = list(out.glob("totpd-*.whl"))
    if len(wheels) != 1:
        raise CheckError(f"pip wheel made {wheels}")
    # The core needs cffi's runtime only; the service's dependencies are not installed here.
    run(
        scratch,
        "sdist",
        [py, "-m", "pip", "install", "-q", "--no-deps", str(wheels[0]), "cffi"],
        out,
    )
    probe = (
        "from totpd import otp; from totpd.domain import Algorithm; "
        "print(otp.totp(b'12345678901234567890', 59, 30, 8, Algorithm.SHA1), *otp.cpu_paths())"
    )
    code, *paths = run(scratch, "sdist", [py, "-c", probe], out).split(maxsplit=1)
    if code != RFC6238_SHA1_AT_59:
        raise CheckError(f"the core built from the sdist computes {code}, not {RFC6238_SHA1_AT_59}")
    say(
        f"sdist: pip built {wheels[0].name} from {sdist.name} (C core compiled from source); "
        f"it computes the RFC 6238 vector (CPU paths: {' '.join(paths).strip()})"
    )


# --- node: npm install of the tarball, ESM and CommonJS examples ---------------------


def check_node(scratch: Scratch, venv_unused: Path, target: str) -> None:
    need("node", "npm")
    tarball = one(f"totpd-client-{scratch.version}.tgz")
    work = scratch.root / "node"
    shutil.copytree(SMOKE / "node", work)
    (work / "package.json").write_text(
        '{ "name": "totpd-release-check", "version": "1.0.0", "private": true }\n',
        encoding="utf-8",
    )
    # The example's tools at the client's own pinned versions.
    dev = json.loads((ROOT / "clients/node/package.json").read_text(encoding="utf-8"))
    tools = [f"{n}@{dev['devDependencies'][n]}" for n in ("typescript", "@types/node")]
    npm = ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"]
    run(scratch, "node", [*npm, str(tarball), *tools], work)
    installed = json.loads(
        (work / "node_modules/@totpd/client/package.json").read_text(encoding="utf-8")
    )
    if installed["version"] != scratch.version:
        raise CheckError(f"npm installed @totpd/client {installed['version']}")
    run(scratch, "node", [str(work / "node_modules/.bin/tsc"), "-p", "tsconfig.json"], work)
    for example in ("flow-esm.mjs", "flow-cjs.cjs"):
        say(run(scratch, "node", ["node", f"out/{example}", target], work).strip())


# --- java: a Maven project resolving the jar from dist/maven -------------------------


def check_java(scratch: Scratch, venv_unused: Path, target: str) -> None:
    need("java", "mvn")
    v = scratch.version
    jar = DIST / f"maven/dev/totpd/totpd-client/{v}/totpd-client-{v}.jar"
    if not jar.exists():
        raise CheckError(f"{jar.relative_to(ROOT)} is missing: run make dist")
    work = scratch.root / "java"
    shutil.copytree(SMOKE / "java", work)
    pom = work / "pom.xml"
    text = pom.read_text(encoding="utf-8")
    text = text.replace("@VERSION@", v).replace("@REPOSITORY@", (DIST / "maven").as_uri())
    pom.write_text(text, encoding="utf-8")
    mvn = ["mvn", "-B", "-ntp", "-Dstyle.color=never"]
    # Released versions are never re-downloaded: drop a copy an earlier build left behind.
    purge = ["dependency:purge-local-repository", "-DreResolve=false", "-DactTransitively=false"]
    run(scratch, "java", [*mvn, *purge, "-DmanualInclude=dev.totpd:totpd-client"], work)
    cp_file = work / "classpath.txt"
    run(
        scratch,
        "java",
        [*mvn, "compile", "dependency:build-classpath", f"-Dmdep.outputFile={cp_file}"],
        work,
    )
    classpath = cp_file.read_text(encoding="utf-8").strip().split(os.pathsep)
    used = [Path(p) for p in classpath if Path(p).name == jar.name]
    if len(used) != 1 or sha256(used[0]) != sha256(jar):
        raise CheckError(f"the classpath's totpd-client jar {used} is not dist's {jar.name}")
    cp = os.pathsep.join([str(work / "target/classes"), *classpath])
    say(run(scratch, "java", ["java", "-cp", cp, "check.Flow", target], work).strip())


# --- go: the module through a file-based module proxy --------------------------------


def check_go(scratch: Scratch, venv_unused: Path, target: str) -> None:
    need("go")
    v = scratch.version
    proxy = DIST / "goproxy"
    if not (proxy / f"{GO_MODULE}/@v/v{v}.zip").exists():
        raise CheckError(f"dist/goproxy has no {GO_MODULE} v{v}: run make dist")
    work = scratch.root / "go"
    shutil.copytree(SMOKE / "go", work)
    cache = run(scratch, "go", ["go", "env", "GOMODCACHE"], work).strip()
    usual = run(scratch, "go", ["go", "env", "GOPROXY"], work).strip()
    # dist first: only it has our module. Then modules this machine already downloaded (a
    # module cache's download directory is itself a proxy), then the configured proxies.
    chain = [proxy.as_uri(), (Path(cache) / "cache/download").as_uri(), usual]
    env = clean_env(
        GOPROXY=",".join(chain),
        GOMODCACHE=str(scratch.root / "gomodcache"),  # empty: nothing stale can stand in
        GOFLAGS="-mod=mod -modcacherw",
        GONOSUMDB="github.com/totpd/totpd",  # not in the public checksum database
        GOWORK="off",
    )
    go_mod = f"module example.com/totpdreleasecheck\n\ngo 1.26.0\n\nrequire {GO_MODULE} v{v}\n"
    (work / "go.mod").write_text(go_mod, encoding="utf-8")
    # The client's dependencies with the hashes the client itself pins (offline-friendly).
    shutil.copy(ROOT / "clients/go/go.sum", work / "go.sum")
    run(scratch, "go", ["go", "mod", "tidy"], work, env)
    # make dist wrote the two go.sum lines of the module (its zip and its go.mod).
    want = (proxy / "go.sum").read_text(encoding="utf-8").splitlines()
    have = (work / "go.sum").read_text(encoding="utf-8").splitlines()
    if not want or not set(want) <= set(have):
        raise CheckError(f"the scratch go.sum lacks {set(want) - set(have)}")
    run(scratch, "go", ["go", "build", "-o", "releasecheck", "."], work, env)
    say(run(scratch, "go", [str(work / "releasecheck"), target], work).strip())


# --- driver --------------------------------------------------------------------------

Check = Callable[[Scratch, Path, str], None]
LATER: dict[str, Check] = {
    "sdist": check_sdist,
    "node": check_node,
    "java": check_java,
    "go": check_go,
}


def timed(
    results: dict[str, str], name: str, fn: Callable[[], None], start: float | None = None
) -> None:
    """Run one check; record passed, failed or (a toolchain missing, not under CI) skipped."""
    start = time.monotonic() if start is None else start
    try:
        fn()
    except MissingToolError as e:
        verdict = "failed" if CI else "skipped"
        say(f"{name}: {verdict.upper()}: {e}{' (CI=true)' if CI else ''}")
        results[name] = verdict
        return
    except (CheckError, subprocess.TimeoutExpired, OSError) as e:
        say(f"{name}: FAILED after {time.monotonic() - start:.0f} s: {e}")
        results[name] = "failed"
        return
    say(f"{name}: passed in {time.monotonic() - start:.0f} s")
    results[name] = "passed"


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument("checks", nargs="*", help=f"some of {' '.join(CHECKS)} (default: all)")
    args = parser.parse_args()
    wanted = args.checks or list(CHECKS)
    if unknown := set(wanted) - set(CHECKS):
        parser.error(f"unknown checks {sorted(unknown)}; choose from {' '.join(CHECKS)}")
    version = (ROOT / "VERSION").read_text(encoding="utf-8").strip()
    root = Path(tempfile.mkdtemp(prefix="totpd-release-check-"))
    scratch = Scratch(root, version, root / "logs")
    scratch.logs.mkdir()
    started = time.monotonic()
    results: dict[str, str] = {}
    say(f"version {version}; scratch directory {root}")
    try:
        check_sums()
        venv = install_wheels(scratch)  # counted in the python check's time
        with running_server(scratch, venv) as target:
            if "python" in wanted:
                flow = functools.partial(check_python, scratch, venv, target)
                timed(results, "python", flow, start=started)
            for name, check in LATER.items():
                if name in wanted:
                    timed(results, name, functools.partial(check, scratch, venv, target))
    except (CheckError, subprocess.TimeoutExpired, OSError) as e:
        say(f"FAILED before the per-ecosystem checks: {e}")
        results["setup"] = "failed"
    finally:
        if args.keep or "failed" in results.values():
            say(f"logs and scratch projects kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    n = {k: sum(1 for r in results.values() if r == k) for k in ("passed", "failed", "skipped")}
    say(f"done in {time.monotonic() - started:.0f} s")
    summary = f"release-check: {n['passed']} passed, {n['failed']} failed"
    print(summary + (f", {n['skipped']} skipped" if n["skipped"] else ""), flush=True)
    return 1 if n["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
