"""requirements.lock is the project's one set of versions: it covers every dependency pyproject.toml
names (runtime, every extra, the build backend), it is closed (every locked package's own
requirements are locked too), the environment the tests run in is exactly it, and every installer
(make, the images) goes through it. A package released upstream cannot change the program."""

from __future__ import annotations

import os
import re
import tomllib
from importlib.metadata import PackageNotFoundError, distribution, distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# a CUDA build of torch brings its own wheels (nvidia-*, triton); the lock is for the CPU build
BUILD_SPECIFIC = {"torch"}
REFRESH = "refresh the lock with `make lock` (README: Dependencies)"
# packages the tests read data files from and never import, installed with --no-deps (Makefile DATA_SAMPLES)
DATA_SAMPLES = set(re.search(r"^DATA_SAMPLES := (.*)$", (ROOT / "Makefile").read_text(), re.M).group(1).split())


def read_lock(text: str) -> dict[str, Version]:
    """name -> pinned version, from pip-compile's output (`name==version` lines, `# via` comments)."""
    pins = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._\-]*)==(\S+)", line)
        assert match, f"requirements.lock line {number} is not `name==version`: {line!r}"
        name = canonicalize_name(match.group(1))
        assert name not in pins, f"requirements.lock pins {name} twice"
        pins[name] = Version(match.group(2))
    return pins


@pytest.fixture(scope="module")
def pins() -> dict[str, Version]:
    return read_lock(LOCK.read_text())


def declared() -> list[tuple[str, Requirement]]:
    """(where, requirement) for everything pyproject.toml asks for."""
    project = PYPROJECT["project"]
    found = [("dependencies", Requirement(r)) for r in project["dependencies"]]
    for extra, requirements in project["optional-dependencies"].items():
        found += [(f"optional-dependencies.{extra}", Requirement(r)) for r in requirements]
    found += [("build-system.requires", Requirement(r)) for r in PYPROJECT["build-system"]["requires"]]
    return found


def public(version: Version) -> Version:
    """2.13.0+cpu -> 2.13.0: the build label names a build, not a release."""
    return Version(version.public)


def test_lock_pins_every_declared_dependency_within_its_range(pins):
    assert len(declared()) > 40
    for where, requirement in declared():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"pyproject.toml {where} needs {requirement} but requirements.lock has no {name}: {REFRESH}"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"requirements.lock pins {name}=={pins[name]}, outside pyproject.toml {where}'s {requirement}: {REFRESH}")


def test_lock_pins_torch_without_a_build_label(pins):
    """So the CPU build here and a CUDA build on a GPU machine both satisfy the same lock."""
    assert pins["torch"] == public(pins["torch"])


def test_lock_is_closed_over_the_installed_packages(pins):
    """Every requirement of every locked package that is installed is itself locked."""
    checked = 0
    for name in pins:
        if name in BUILD_SPECIFIC or name in DATA_SAMPLES:
            continue
        try:
            requires = distribution(name).requires or []
        except PackageNotFoundError:  # pinned for another set-up (e.g. an image-only extra)
            continue
        checked += 1
        for text in requires:
            requirement = Requirement(text)
            if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
                continue
            dependency = canonicalize_name(requirement.name)
            assert dependency in pins, f"{name} needs {requirement}, which requirements.lock does not pin: {REFRESH}"
    assert checked > 100


@pytest.mark.skipif(os.environ.get("PLUS_ULTRA_UNLOCKED") == "1",
                    reason="PLUS_ULTRA_UNLOCKED=1: installed without the lock on purpose (README: Dependencies)")
def test_installed_environment_is_the_lock(pins):
    """The guard that makes a fresh clone next month the same program: what the tests run with is
    what the lock says (the failure this replaces: uvicorn 0.55.0 installed, 0.54.0 shipped)."""
    installed = {canonicalize_name(d.metadata["Name"]): Version(d.version) for d in distributions()}
    wrong = {name: (installed[name], pin) for name, pin in pins.items()
             if name in installed and public(installed[name]) != pin}
    assert not wrong, "installed != requirements.lock: " + ", ".join(
        f"{name} {have} (lock {want})" for name, (have, want) in sorted(wrong.items())) + \
        ". Install with the lock (`make setup-test`), or refresh it on purpose with `make lock`."
    needed = {canonicalize_name(r.name) for where, r in declared()
              if where in ("dependencies", "optional-dependencies.test")}
    assert needed <= set(installed), f"not installed: {sorted(needed - set(installed))}"


def test_data_samples_are_pinned_and_never_imported(pins):
    """A data sample is pinned like everything else, but its requirements are not (they need not
    co-resolve), so no code may import it: the project reads its files through package metadata."""
    assert DATA_SAMPLES == {"skfolio"}
    for name in DATA_SAMPLES:
        assert canonicalize_name(name) in pins, f"requirements.lock has no pin for the data sample {name}: {REFRESH}"
    sources = [p for folder in ("plus_ultra_ml", "plus_ultra_assets", "benchmarks") for p in (ROOT / folder).rglob("*.py")]
    importing = [str(p.relative_to(ROOT)) for p in sources for name in DATA_SAMPLES
                 if re.search(rf"^\s*(import|from)\s+{name}\b", p.read_text(), re.M)]
    assert not importing, f"these import a data sample, whose requirements are not installed: {importing}"


def test_read_lock_rejects_what_is_not_a_pin():
    assert read_lock("a==1.0\n    # via b\nB_c==2.0  # note\n") == {"a": Version("1.0"), "b-c": Version("2.0")}
    with pytest.raises(AssertionError, match="line 1"):
        read_lock("a>=1.0\n")
    with pytest.raises(AssertionError, match="twice"):
        read_lock("a==1\nA==2\n")


def test_every_installer_goes_through_the_lock():
    makefile = (ROOT / "Makefile").read_text()
    installs = [line for line in makefile.splitlines() if "pip install" in line and "PIP_TOOLS" not in line]
    assert len(installs) >= 4 and all("$(CONSTRAIN)" in line for line in installs), installs
    assert "LOCK ?= requirements.lock" in makefile and "CONSTRAIN := $(if $(LOCK),-c $(LOCK))" in makefile
    for name in ("Dockerfile", "Dockerfile.gpu"):
        text = (ROOT / "docker" / name).read_text()
        installs = re.findall(r"pip install [^\n\\]*", text)
        assert installs and all("-c requirements.lock" in i or "--no-deps" in i for i in installs), (name, installs)
        assert "!requirements.lock" in (ROOT / "docker" / f"{name}.dockerignore").read_text()
        version = re.search(r"^ARG TORCH_VERSION=(\S+)$", text, flags=re.M).group(1)
        assert Version(version) == read_lock(LOCK.read_text())["torch"], name
    # no second set of hand-written pins anywhere
    assert not (ROOT / "docker" / "constraints.txt").exists()
    assert not (ROOT / "docker" / "requirements-deploy.txt").exists()
    assert "make lock" in LOCK.read_text().splitlines()[4]
