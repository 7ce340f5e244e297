"""The trainer image (jobs/image/Dockerfile), checked without a Docker daemon:

- its build context (Dockerfile.dockerignore) holds what the COPY lines need and nothing else;
- every third-party module that jobs/ and the fleet worker import is installed, pinned;
- it runs as any `--user UID:GID` (HOME and caches in /tmp, no home of its own);
- the fleet worker imports nothing of gpuhire but jobs/, so the files copied are enough: it is
  imported from a copy of exactly what the image's /app holds.

The image itself is built where Docker runs (docs/trainer.md); these tests cannot pull the base.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).parents[2]
DOCKERFILE = ROOT / "jobs" / "image" / "Dockerfile"
IGNORE = ROOT / "jobs" / "image" / "Dockerfile.dockerignore"
WORKER = ROOT / "jobs" / "fleet" / "worker.py"

# import name -> the pip distribution that provides it (torch comes with the base image).
DISTRIBUTIONS = {"PIL": "pillow", "pynvml": "nvidia-ml-py", "botocore": "boto3"}
FROM_BASE = {"torch"}


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _pip_pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for word, args in _instructions():
        if word == "RUN" and "pip install" in args:
            for token in args.split("pip install", 1)[1].split():
                if not token.startswith("-"):
                    name, sep, version = token.partition("==")
                    assert sep and version, f"{token}: pin it (name==version)"
                    pins[name.lower()] = version
    return pins


def _copy_sources() -> list[str]:
    sources = []
    for word, args in _instructions():
        if word == "COPY":
            parts = [p for p in args.split() if not p.startswith("--")]
            sources += parts[:-1]
    return sources


# ------------------------------------------------------------------ the build context


def _pattern(p: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex (Go filepath.Match plus `**`, as Docker reads it)."""
    p = p.strip("/")
    out, i = "", 0
    while i < len(p):
        if p.startswith("**/", i):
            out, i = out + "(.*/)?", i + 3
        elif p.startswith("**", i):
            out, i = out + ".*", i + 2
        elif p[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif p[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(p[i]), i + 1
    return re.compile(out)


def _rules() -> list[tuple[bool, re.Pattern[str], str]]:
    rules = []
    for line in IGNORE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keep = line.startswith("!")
            raw = line.lstrip("!").strip()
            rules.append((keep, _pattern(raw), raw.strip("/")))
    return rules


def _in_context(rel: str, rules: list[tuple[bool, re.Pattern[str], str]]) -> bool:
    """Docker's rule: the last pattern that matches the path or one of its parents decides."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[: k + 1]) for k in range(len(parts))]
    included = True
    for keep, regex, _ in rules:
        if any(regex.fullmatch(p) for p in prefixes):
            included = keep
    return included


def _context_files() -> set[str]:
    """Every file of the checkout that `docker build -f jobs/image/Dockerfile .` would send."""
    rules = _rules()
    reopened = {raw.split("/")[0] for keep, _, raw in rules if keep}
    found = set()
    for top in ROOT.iterdir():
        if top.name == ".git" or (not _in_context(top.name, rules) and top.name not in reopened):
            continue
        paths = [top] if top.is_file() else [p for p in top.rglob("*") if p.is_file()]
        found |= {p.relative_to(ROOT).as_posix() for p in paths
                  if _in_context(p.relative_to(ROOT).as_posix(), rules)}
    return found


def test_the_context_holds_what_copy_needs_and_nothing_else() -> None:
    context = _context_files()
    for source in _copy_sources():
        if source.endswith("/"):
            assert any(f.startswith(source) for f in context), f"COPY {source}: not in the context"
        else:
            assert source in context, f"COPY {source}: not in the context"
    outside = {f for f in context if not f.startswith("jobs/")}
    assert not outside, outside  # the fleet worker lives in jobs/: nothing of launcher/
    assert not any("__pycache__" in f or f.endswith(".pyc") for f in context)
    assert {"jobs/htr/train.py", "jobs/htr/presets/small.toml", "jobs/htr/events.schema.json"} <= context


def test_the_matcher_reads_dockerignore_as_docker_does() -> None:
    rules = [(False, _pattern("*"), "*"), (True, _pattern("launcher/a.py"), "launcher/a.py"),
             (False, _pattern("**/__pycache__"), "**/__pycache__")]
    assert not _in_context("launcher/b.py", rules) and _in_context("launcher/a.py", rules)
    assert not _in_context("__pycache__/x.pyc", rules) and not _in_context("README.md", rules)


# ------------------------------------------------------------------ what is installed


def _third_party_imports(paths: list[Path]) -> set[str]:
    names: set[str] = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in ("jobs", "launcher")}


def _image_code() -> list[Path]:
    return [p for p in (ROOT / "jobs").rglob("*.py") if "__pycache__" not in p.parts]


def test_every_module_the_image_code_imports_is_installed_and_pinned() -> None:
    pins = _pip_pins()
    needed = _third_party_imports(_image_code()) - FROM_BASE
    missing = {DISTRIBUTIONS.get(n, n).lower() for n in needed} - set(pins)
    assert missing == set(), f"imported by jobs/ or the fleet worker, not installed: {missing}"
    base = dict(_instructions())["ARG"]
    assert re.search(r"pytorch/pytorch:\d+\.\d+\.\d+-cuda", base), "pin the torch base image"


def test_the_image_runs_as_any_uid() -> None:
    env = " ".join(args for word, args in _instructions() if word == "ENV")
    assert "HOME=/tmp" in env and "XDG_CACHE_HOME=/tmp/" in env and "TORCH_HOME=/tmp/" in env
    assert "USER=" in env  # getpass.getuser() for a uid that /etc/passwd does not know
    text = DOCKERFILE.read_text()
    assert "--create-home" not in text.replace("--no-create-home", "") and "/home/" not in text
    user = [args for word, args in _instructions() if word == "USER"]
    assert user and user[-1] not in ("root", "0"), "a non-root default user"
    assert "--user $(id -u):$(id -g)" in (ROOT / "docs" / "trainer.md").read_text()


# ------------------------------------------------------------------ the fleet worker


def test_the_fleet_worker_needs_only_the_stdlib_boto3_and_jobs() -> None:
    assert _third_party_imports([WORKER]) <= {"boto3", "botocore"}
    tree = ast.parse(WORKER.read_text())
    ours = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
            and n.module.split(".")[0] in ("jobs", "launcher")}
    assert all(m.startswith("jobs.") for m in ours), f"the image has no {ours}"


def test_the_fleet_worker_starts_from_what_the_image_copies(tmp_path: Path) -> None:
    app = tmp_path / "app"  # what /app holds in the image: the COPY lines, from the context only
    context = _context_files()
    for word, args in _instructions():
        if word != "COPY":
            continue
        parts = [p for p in args.split() if not p.startswith("--")]
        dest = app / parts[-1].removeprefix("/app/")
        for source in parts[:-1]:
            for rel in sorted(f for f in context if f == source or f.startswith(source.rstrip("/") + "/")):
                target = dest / (rel.removeprefix(source) if source.endswith("/") else Path(rel).name)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / rel, target)
    # -S: no .pth files, so the checkout's editable install cannot lend the rest of launcher/;
    # the site-packages come back on the path as plain folders (boto3, torch, ...).
    packages = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(app), *sorted(packages)])}
    for module in ("jobs.fleet.worker", "jobs.htr"):
        done = subprocess.run([sys.executable, "-S", "-m", module, "--help"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "Example:" in done.stdout
    rest = subprocess.run([sys.executable, "-S", "-c", "import launcher.cli"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert rest.returncode != 0 and "No module named 'launcher" in rest.stderr  # really isolated
