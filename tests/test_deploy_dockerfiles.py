"""The Dockerfiles build the image with the same commands as `make install` (no docker engine here to
build them: this parses the Makefile's install recipe and each Dockerfile's RUN steps and compares)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKERFILES = [REPO / "deploy" / "Dockerfile", REPO / "deploy" / "Dockerfile.cuda"]
IMAGE_ONLY = "# image-only"


def _squash(cmd: str) -> str:
    """One line, single spaces: the shell sees `\\`-newline continuations and indentation the same way."""
    return " ".join(cmd.replace("\\\n", " ").split())


def make_install_commands(makefile: Path = REPO / "Makefile") -> list[str]:
    """The shell commands of the install stamp's recipe, variables expanded, comments and the stamp dropped."""
    text = makefile.read_text()
    variables: dict[str, str] = {}
    for name, value in re.findall(r"^([A-Z_]+)\s*[:?]?=\s*(.*)$", text, re.M):
        variables.setdefault(name, value.strip())
    recipe = re.search(r"^\$\(STAMP\):.*\n((?:\t.*\n)+)", text, re.M)
    assert recipe, "Makefile: no `$(STAMP):` install recipe found"
    joined = re.sub(r"\\\n\t", "\\\n", recipe.group(1))
    commands = []
    for line in re.split(r"(?<!\\)\n", joined):
        line = line.strip()
        if not line or line.startswith("#") or line.endswith("> $@"):
            continue
        line = line.lstrip("@")
        for _ in range(5):  # nested $(PIP) -> $(PY) -> $(VENV)
            line = re.sub(r"\$\((\w+)\)", lambda m: variables.get(m.group(1), m.group(0)), line)
        assert "$(" not in line, f"unexpanded make variable in {line!r}"
        commands.append(_squash(line.replace("$$", "$")))
    return commands


def dockerfile_instructions(path: Path) -> list[tuple[str, str, bool]]:
    """(INSTRUCTION, arguments, image_only) per instruction; continuation lines joined."""
    out: list[tuple[str, str, bool]] = []
    image_only = False
    lines = iter(path.read_text().splitlines())
    for line in lines:
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            image_only = image_only or stripped.startswith(IMAGE_ONLY)
            continue
        while line.rstrip().endswith("\\"):
            line = line.rstrip() + "\n" + next(lines)
        keyword, _, args = line.strip().partition(" ")
        out.append((keyword.upper(), args, image_only))
        image_only = False
    return out


def build_commands(path: Path) -> list[str]:
    """The RUN commands that stand for `make install` (image-only ones left out), RUN flags dropped."""
    commands = []
    for keyword, args, image_only in dockerfile_instructions(path):
        if keyword != "RUN" or image_only:
            continue
        while args.startswith("--"):  # --mount=type=cache,... changes caching, not the command
            args = args.split(None, 1)[1]
        commands.append(_squash(args))
    return commands


def test_the_makefile_recipe_parses_into_the_known_install_steps() -> None:
    commands = make_install_commands()
    assert any(c.startswith("command -v bwrap") for c in commands)
    assert ".venv/bin/python -m pip install -q torch==2.13.0" in commands
    assert any(c.startswith(".venv/bin/python -m pip install -q -e") and "ray" in c for c in commands)
    assert commands[-1] == ".venv/bin/python -m rewardsvc.prepare"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_runs_exactly_make_install(dockerfile: Path) -> None:
    expected, got = make_install_commands(), build_commands(dockerfile)
    missing = [c for c in expected if c not in got]
    extra = [c for c in got if c not in expected]
    assert got == expected, (
        f"{dockerfile.relative_to(REPO)} drifted from `make install`: add the Makefile's new step(s) {missing} "
        f"as RUN lines in the same order, or mark image-only steps {extra} with a preceding '{IMAGE_ONLY}' comment"
    )


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_layout(dockerfile: Path) -> None:
    steps = dockerfile_instructions(dockerfile)
    keywords = [k for k, _, _ in steps]
    assert keywords[0] == "FROM" and ("WORKDIR", "/app", False) in steps
    # The venv path make uses (.venv, relative) lives in the WORKDIR the entrypoint names.
    entry = json.loads(next(a for k, a, _ in steps if k == "ENTRYPOINT"))
    assert entry == ["/app/.venv/bin/rewardsvc"]
    assert json.loads(next(a for k, a, _ in steps if k == "CMD"))[0] == "serve"
    # Source is copied before the first step that needs it (the editable install), after torch.
    copy_at = keywords.index("COPY")
    runs = [(i, a) for i, (k, a, _) in enumerate(steps) if k == "RUN"]
    assert all(i > copy_at for i, a in runs if " -e " in a or "rewardsvc.prepare" in a)
    assert all(i < copy_at for i, a in runs if "torch==" in a)
    # The host's venv and git history stay out of the build context.
    ignore = (dockerfile.parent / f"{dockerfile.name}.dockerignore").read_text().split()
    assert ".venv" in ignore and ".git" in ignore
    ports = next(a for k, a, _ in steps if k == "EXPOSE").split()
    assert "50051" in ports


def test_cuda_image_differs_only_in_torch_build_and_gpu_env() -> None:
    cpu, cuda = (dockerfile_instructions(p) for p in DOCKERFILES)
    differ = [(a, b) for a, b in zip(cpu, cuda) if a[:2] != b[:2]]
    assert len(cpu) == len(cuda)
    assert {a[0] for a, _ in differ} <= {"ARG", "ENV", "RUN"}
    args = {a[1] for a, _ in differ if a[0] == "ARG"} | {b[1] for _, b in differ if b[0] == "ARG"}
    assert any("whl/cpu" in a for a in args) and any("whl/cu" in a for a in args)
    env = next(b for _, b in differ if b[0] == "ENV")
    assert "NVIDIA_VISIBLE_DEVICES" in env[1]
