"""``make images`` (``python -m mlplatform.scripts.images``): build the container images.

* ``mlplatform/platform:<version>`` -- every role of the platform (infra/docker/Dockerfile);
* ``mlplatform/jupyterhub:<version>`` -- the platform image plus JupyterHub and its proxy;
* with ``--ci``, the stand-ins ``docker-compose.ci.yml`` uses where Docker Hub cannot be
  reached: ``mlplatform/s3-standin:ci`` (moto), ``mlplatform/postgres:ci`` and
  ``mlplatform/prometheus:ci`` (Debian's packages).

The base image is ``--base`` (or ``MLPLATFORM_BASE_IMAGE``); without one, on a machine that
cannot pull ``python:3.11-slim``, a Debian bookworm base is made locally once with
``debootstrap --variant=minbase`` and ``docker import`` (``mlplatform/base:bookworm``).
Builds use the classic builder (``DOCKER_BUILDKIT=0``; buildx may be absent).  pip inside a
build trusts the machine's CA bundle, added to the build context (a tar file made here, so
nothing is written into the checkout and the bundle is never committed).
"""
from __future__ import annotations

import argparse
import configparser
import fcntl
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import List, Optional, Sequence

SOURCE_ROOT = Path(__file__).resolve().parents[1]
DOCKER_FOLDER = SOURCE_ROOT / "infra" / "docker"
EXTRAS = "infra/docker/extras"   # in the build context: the CA bundle and wheels (optional)
# The build context: what the Dockerfiles copy (the same list as .dockerignore's).
CONTEXT = ("constraints.txt", "setup.cfg", "pyproject.toml", "README.md", "pyfunc_models",
           "mlserver_configs", "client", "gateway", "scripts", "infra/docker", "notebooks",
           "examples", "infra/jupyterhub/jupyterhub_config.py",
           "infra/jupyterhub/package.json", "infra/jupyterhub/package-lock.json")
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
OFFICIAL_BASE = "python:3.11-slim-bookworm"  # the Dockerfiles' default base
LOCAL_BASE = "mlplatform/base:bookworm"
# what the base needs for the platform and for the stand-ins' apt-get
BASE_PACKAGES = "python3,python3-venv,ca-certificates"
CI_IMAGES = {"s3-standin": "mlplatform/s3-standin:ci", "postgres": "mlplatform/postgres:ci",
             "prometheus": "mlplatform/prometheus:ci"}


class ImageBuildError(RuntimeError):
    """A build step failed; the message names it and what to do."""


def platform_version() -> str:
    """The package's version; from setup.cfg when run as a script before installing
    (`.ci/run` builds the images while `make install` runs)."""
    try:
        return version("mlplatform")
    except PackageNotFoundError:
        config = configparser.ConfigParser()
        config.read(SOURCE_ROOT / "setup.cfg")
        return config["metadata"]["version"]


def platform_image() -> str:
    return f"mlplatform/platform:{platform_version()}"


def jupyterhub_image() -> str:
    return f"mlplatform/jupyterhub:{platform_version()}"


def docker(*arguments: str, quiet: bool = False, **kwargs) -> subprocess.CompletedProcess:
    docker_binary = shutil.which("docker")
    if docker_binary is None:
        raise ImageBuildError("docker is not installed (Debian: apt-get install docker.io)")
    output = subprocess.DEVNULL if quiet else None
    return subprocess.run([docker_binary, *arguments], stdout=output, stderr=output, **kwargs)


def daemon_answers() -> bool:
    try:
        return docker("info", quiet=True, timeout=20).returncode == 0
    except (ImageBuildError, subprocess.TimeoutExpired):
        return False


def image_exists(name: str) -> bool:
    return docker("image", "inspect", name, quiet=True).returncode == 0


def choose_base(report=print) -> str:
    """The official Python image where it can be pulled, else the local debootstrap base."""
    if image_exists(OFFICIAL_BASE) or docker("pull", "--quiet", OFFICIAL_BASE, quiet=True,
                                             timeout=900).returncode == 0:
        return OFFICIAL_BASE
    report(f"{OFFICIAL_BASE} cannot be pulled here: using a local Debian base")
    return local_base(report)


def local_base(report=print) -> str:
    """The debootstrap base, made once per Docker daemon."""
    if image_exists(LOCAL_BASE):
        return LOCAL_BASE
    if shutil.which("debootstrap") is None:
        raise ImageBuildError("no base image: pass --base IMAGE (e.g. python:3.11-slim-bookworm) "
                              "or install Debian's debootstrap to make one locally")
    report(f"making {LOCAL_BASE} with debootstrap (about a minute)")
    with tempfile.TemporaryDirectory(prefix="mlplatform-rootfs-") as root:
        step = subprocess.run(["debootstrap", "--variant=minbase", f"--include={BASE_PACKAGES}",
                               "bookworm", root], capture_output=True, text=True)
        if step.returncode != 0:
            raise ImageBuildError("debootstrap failed:\n" + step.stderr[-2000:])
        tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
        imported = docker("import", "-c", 'CMD ["/bin/bash"]', "-", LOCAL_BASE,
                          stdin=tar.stdout, quiet=True)
        tar.wait()
        if imported.returncode != 0 or tar.returncode != 0:
            raise ImageBuildError(f"docker import of the debootstrap tree as {LOCAL_BASE} failed")
    return LOCAL_BASE


def _deterministic(member: tarfile.TarInfo) -> Optional[tarfile.TarInfo]:
    """Same files, same layer cache: no times or owners in the context."""
    if "__pycache__" in member.name or member.name.endswith(".pyc"):
        return None
    member.mtime, member.uid, member.gid, member.uname, member.gname = 0, 0, 0, "", ""
    return member


def write_context(path: Path) -> None:
    """The build context as a tar file, with the machine's CA bundle added as
    ``infra/docker/extras/ca-certificates.crt`` (pip trusts it where a proxy re-signs TLS).
    Nothing is written into the checkout: the bundle never lands in git."""
    with tarfile.open(path, "w") as context:
        for name in CONTEXT:
            context.add(SOURCE_ROOT / name, arcname=name, filter=_deterministic)
        if CA_BUNDLE.exists():
            context.add(CA_BUNDLE, arcname=f"{EXTRAS}/ca-certificates.crt", filter=_deterministic)


def build(dockerfile: str, tag: str, base: str, context: Path, report=print,
          **arguments: str) -> None:
    report(f"building {tag} ({dockerfile}, base {base})")
    build_arguments = [item for key, value in {"BASE_IMAGE": base, **arguments}.items()
                       for item in ("--build-arg", f"{key}={value}")]
    with open(context, "rb") as stream:
        step = docker("build", "--quiet", "--force-rm", *build_arguments,
                      "-f", dockerfile, "-t", tag, "-", stdin=stream, capture_output=True,
                      env={**os.environ, "DOCKER_BUILDKIT": "0"})
    if step.returncode != 0:
        output = (step.stdout + step.stderr).decode(errors="replace")
        raise ImageBuildError(f"building {tag} failed:\n{output[-4000:]}")


def build_all(base: Optional[str] = None, *, ci: bool = False, report=print) -> List[str]:
    """Build the images; a second caller (the compose test while `.ci/run` builds in the
    background) waits for the first, then finds every layer in Docker's cache."""
    # the lock lives outside the build context: a file in it would change the COPY layer
    with open(Path(tempfile.gettempdir()) / "mlplatform-images.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _build_all(base, ci, report)


def _build_all(base: Optional[str], ci: bool, report) -> List[str]:
    base = base or os.environ.get("MLPLATFORM_BASE_IMAGE") or choose_base(report)
    with tempfile.TemporaryDirectory(prefix="mlplatform-context-") as folder:
        context = Path(folder) / "context.tar"
        write_context(context)
        built = [platform_image(), jupyterhub_image()]
        build("infra/docker/Dockerfile", built[0], base, context, report)
        build("infra/docker/jupyterhub.Dockerfile", built[1], base, context, report,
              PLATFORM_IMAGE=built[0])
        if ci:
            for name, tag in CI_IMAGES.items():
                build(f"infra/docker/ci/{name}.Dockerfile", tag, base, context, report)
                built.append(tag)
    return built


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", help=f"base image [MLPLATFORM_BASE_IMAGE, else {OFFICIAL_BASE} "
                                       "if it can be pulled, else a local debootstrap bookworm]")
    parser.add_argument("--ci", action="store_true",
                        help="also the stand-ins docker-compose.ci.yml uses")
    options = parser.parse_args(argv)
    try:
        for tag in build_all(options.base, ci=options.ci):
            print(f"built {tag}")
    except ImageBuildError as exc:
        print(f"make images: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
