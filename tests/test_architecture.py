"""The import rules, guarded by a test.

Every .py file under launcher/, ledger/ and jobs/ is parsed with `ast` (nothing is imported),
relative imports are resolved, and every import counts: module level, inside functions, and
under `if TYPE_CHECKING:` (a type-only import is an arrow like any other). The rules:

  a. jobs/ imports nothing of ours (no launcher, no ledger): it runs on the rented box.
  b. ledger/ never imports launcher/.
  c. boto3/botocore only in launcher/providers/aws/ and jobs/fleet/ (the box-side worker);
     ledger/ may import them inside a function body (the SNS notifier), never at module level.
  d. paramiko only in launcher/ssh/.
  e. torch only in jobs/.
  f. Only launcher/cli.py, launcher/commands/__init__.py and launcher/docgen.py import a command
     module (launcher.commands.*); no command module imports another.
  g. No import cycle between our modules, type-only imports (`if TYPE_CHECKING:`) included:
     a type hint that points back up is still a knot a reader has to untie.
  h. `gpuhire --help` imports none of boto3, botocore, paramiko, torch, matplotlib.

Each failure names the file, the line and what it imports ("launcher/x.py:23 imports boto3").
The checker is tested on a small fake tree too, so that a rule cannot pass by seeing nothing.
"""

from __future__ import annotations

import ast
import itertools
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("launcher", "ledger", "jobs")


# --------------------------------------------------------------------------- the scanner


@dataclass(frozen=True)
class Import:
    path: str  # the importing file, relative to the root, POSIX: "launcher/train/flow.py"
    line: int
    importer: str  # the importing module: "launcher.train.flow"
    target: str  # the imported module, resolved: "boto3", "launcher.commands.alerts_cmds"
    in_function: bool  # inside a def (lazy), not run at import time
    type_checking: bool  # under `if TYPE_CHECKING:`

    @property
    def top(self) -> str:
        return self.target.split(".")[0]

    def where(self) -> str:
        return f"{self.path}:{self.line}"

    def message(self, note: str = "") -> str:
        extra = [w for w, on in (("in a function", self.in_function),
                                 ("under TYPE_CHECKING", self.type_checking), (note, bool(note)))
                 if on]
        return f"{self.where()} imports {self.target}" + (f" ({'; '.join(extra)})" if extra else "")


@dataclass
class Tree:
    root: Path
    modules: dict[str, str] = field(default_factory=dict)  # module name -> relative path
    imports: list[Import] = field(default_factory=list)

    def ours(self, name: str) -> bool:
        return name.split(".", maxsplit=1)[0] in PACKAGES


def _module_name(rel: Path) -> tuple[str, bool]:
    """("launcher.train.flow", False) for launcher/train/flow.py; ("launcher.train", True) for
    launcher/train/__init__.py."""
    parts = list(rel.with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts.pop()
    return ".".join(parts), is_package


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class _Collector(ast.NodeVisitor):
    """Raw imports of one file: (line, module-as-written, level, names, in_function, tc)."""

    def __init__(self) -> None:
        self.found: list[tuple[int, str, int, list[str] | None, bool, bool]] = []
        self._functions = 0
        self._type_checking = 0

    def _add(self, line: int, module: str, level: int, names: list[str] | None) -> None:
        self.found.append((line, module, level, names, self._functions > 0,
                           self._type_checking > 0))

    def _function(self, node: ast.AST) -> None:
        self._functions += 1
        self.generic_visit(node)
        self._functions -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            self.visit(node.test)
            self._type_checking += 1
            for stmt in node.body:
                self.visit(stmt)
            self._type_checking -= 1
            for stmt in node.orelse:  # the else branch runs
                self.visit(stmt)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(node.lineno, alias.name, 0, None)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        self._add(node.lineno, node.module or "", node.level, [a.name for a in node.names])

    def visit_Call(self, node: ast.Call) -> None:
        # importlib.import_module("x.y") / __import__("x.y") with a literal name
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if (name in ("import_module", "__import__") and node.args
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
                and not node.args[0].value.startswith(".")):
            self._add(node.lineno, node.args[0].value, 0, None)
        self.generic_visit(node)


def _resolve_base(module: str, is_package: bool, level: int, written: str) -> str:
    """The absolute module of `from <level dots><written> import ...` inside `module`."""
    if level == 0:
        return written
    package = module.split(".") if is_package else module.split(".")[:-1]
    if level > 1:
        package = package[: len(package) - (level - 1)]
    return ".".join([*package, *([written] if written else [])])


def scan(root: Path, packages: tuple[str, ...] = PACKAGES) -> Tree:
    tree = Tree(root)
    parsed: list[tuple[str, str, bool, ast.Module]] = []
    for package in packages:
        for file in sorted((root / package).rglob("*.py")):
            relative = file.relative_to(root)
            name, is_package = _module_name(relative)
            tree.modules[name] = relative.as_posix()
            source = file.read_text(encoding="utf-8")
            parsed.append((relative.as_posix(), name, is_package,
                           ast.parse(source, filename=str(relative))))
    for rel, name, is_package, module_ast in parsed:
        collector = _Collector()
        collector.visit(module_ast)
        for line, written, level, names, in_function, tc in collector.found:
            base = _resolve_base(name, is_package, level, written)
            targets: list[str] = []
            if names is None:
                targets = [base]
            else:
                for n in names:
                    # `from package import name`: the module package.name if there is one
                    sub = f"{base}.{n}" if base else n
                    targets.append(sub if n != "*" and sub in tree.modules else base)
            for target in dict.fromkeys(targets):
                tree.imports.append(Import(rel, line, name, target, in_function, tc))
    return tree


@cache
def real_tree() -> Tree:
    return scan(ROOT)


# --------------------------------------------------------------------------- the rules


def _forbidden(tree: Tree, tops: set[str], allowed: Callable[[Import], bool]) -> list[str]:
    return [i.message() for i in tree.imports if i.top in tops and not allowed(i)]


def rule_jobs_import_nothing_of_ours(tree: Tree, of: str) -> list[str]:
    """a. jobs/ imports no `of` (launcher or ledger)."""
    return _forbidden(tree, {of}, lambda i: not i.importer.startswith("jobs"))


def rule_ledger_never_imports_launcher(tree: Tree) -> list[str]:
    """b."""
    return _forbidden(tree, {"launcher"}, lambda i: i.importer.split(".")[0] != "ledger")


def rule_aws_sdk_only_at_its_edges(tree: Tree, sdk: str) -> list[str]:
    """c. boto3/botocore: launcher/providers/aws/, jobs/fleet/; ledger/ inside functions only."""

    def allowed(i: Import) -> bool:
        return (i.path.startswith(("launcher/providers/aws/", "jobs/fleet/"))
                or (i.path.startswith("ledger/") and i.in_function))

    return _forbidden(tree, {sdk}, allowed)


def rule_paramiko_only_in_launcher_ssh(tree: Tree) -> list[str]:
    """d."""
    return _forbidden(tree, {"paramiko"}, lambda i: i.path.startswith("launcher/ssh/"))


def rule_torch_only_in_jobs(tree: Tree) -> list[str]:
    """e."""
    return _forbidden(tree, {"torch"}, lambda i: i.path.startswith("jobs/"))


COMMANDS = "launcher.commands"
MAY_IMPORT_COMMANDS = {"launcher/cli.py", "launcher/commands/__init__.py", "launcher/docgen.py"}


def _is_command_target(target: str) -> bool:
    # the package counts too: importing it imports every command module
    return target == COMMANDS or target.startswith(COMMANDS + ".")


def rule_commands_imported_only_by_the_cli(tree: Tree) -> list[str]:
    """f. Only cli.py, commands/__init__.py and docgen.py import command modules; no command
    module imports another (nor the commands package)."""
    out = []
    for i in tree.imports:
        if not _is_command_target(i.target) or i.target == i.importer:
            continue
        if i.importer.startswith(COMMANDS + "."):
            out.append(i.message("a command module importing another"))
        elif i.path not in MAY_IMPORT_COMMANDS:
            out.append(i.message(f"only {', '.join(sorted(MAY_IMPORT_COMMANDS))} may"))
    return out


def module_graph(tree: Tree) -> dict[str, dict[str, Import]]:
    """importer -> {imported module of ours -> the first import that makes the edge};
    imports under TYPE_CHECKING count too."""
    graph: dict[str, dict[str, Import]] = {m: {} for m in tree.modules}
    for i in tree.imports:
        if i.target not in tree.modules:
            continue
        graph[i.importer].setdefault(i.target, i)
    return graph


def _strongly_connected(graph: dict[str, dict[str, Import]]) -> list[list[str]]:
    """Tarjan, iterative."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(sorted(component))
    return components


def _shortest_cycle(graph: dict[str, dict[str, Import]], members: list[str]) -> list[str]:
    """A shortest cycle through the first member, inside the component: [a, b, ..., a]."""
    inside = set(members)
    start = members[0]
    previous: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in sorted(graph[node]):
            if child not in inside:
                continue
            if child == start:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                return [*reversed(path), start]
            if child not in previous:
                previous[child] = node
                queue.append(child)
    return [start, start]


def rule_no_import_cycles(tree: Tree) -> list[str]:
    """g. Each cycle: its modules, and one loop through them with the file:line of each edge."""
    graph = module_graph(tree)
    out = []
    for members in _strongly_connected(graph):
        if len(members) == 1 and members[0] not in graph[members[0]]:
            continue
        loop = _shortest_cycle(graph, members)
        edges = "; ".join(graph[a][b].message() for a, b in itertools.pairwise(loop))
        out.append(f"import cycle among {members}: {' -> '.join(loop)} [{edges}]")
    return out


def _fail(violations: list[str]) -> None:
    assert not violations, "\n".join(violations)


# --------------------------------------------------------------------------- the tests


def test_the_scanner_sees_the_tree() -> None:
    tree = real_tree()
    assert {"launcher.cli", "ledger.book", "jobs.fleet.worker"} <= set(tree.modules)
    assert len(tree.imports) > 200
    assert any(i.target == "launcher.commands" and i.path == "launcher/cli.py"
               for i in tree.imports)


@pytest.mark.parametrize("of", ["launcher", "ledger"])
def test_a_jobs_import_nothing_of_ours(of: str) -> None:
    _fail(rule_jobs_import_nothing_of_ours(real_tree(), of))


def test_b_ledger_never_imports_launcher() -> None:
    _fail(rule_ledger_never_imports_launcher(real_tree()))


@pytest.mark.parametrize("sdk", ["boto3", "botocore"])
def test_c_aws_sdk_only_in_providers_aws_and_the_fleet_worker(sdk: str) -> None:
    _fail(rule_aws_sdk_only_at_its_edges(real_tree(), sdk))


def test_d_paramiko_only_in_launcher_ssh() -> None:
    _fail(rule_paramiko_only_in_launcher_ssh(real_tree()))


def test_e_torch_only_in_jobs() -> None:
    _fail(rule_torch_only_in_jobs(real_tree()))


def test_f_command_modules_are_imported_only_by_the_cli() -> None:
    _fail(rule_commands_imported_only_by_the_cli(real_tree()))


def test_g_no_import_cycles() -> None:
    _fail(rule_no_import_cycles(real_tree()))


HEAVY = ("boto3", "botocore", "paramiko", "torch", "matplotlib")


def test_h_help_imports_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "sys.argv = ['gpuhire', '--help']\n"
        "from launcher.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"heavy = sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r})\n"
        "print('HEAVY', heavy)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       timeout=60)
    assert "Usage" in r.stdout, r.stdout + r.stderr
    assert "HEAVY []" in r.stdout, r.stdout + r.stderr


# --------------------------------------------------------------------------- the checker itself


FAKE = {
    "launcher/__init__.py": "",
    "launcher/cli.py": "from launcher.commands import train_cmds\n",  # allowed
    "launcher/commands/__init__.py": "from . import train_cmds, ledger_cmds\n",  # allowed
    "launcher/commands/train_cmds.py": (
        "def f():\n"
        "    from .ledger_cmds import record\n"  # line 2: f, command -> command, relative
    ),
    "launcher/commands/ledger_cmds.py": "def record(): ...\n",
    "launcher/train/__init__.py": "",
    "launcher/train/flow.py": (
        "import os\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from launcher.train import quote\n"  # line 4: a TYPE_CHECKING-only back edge
        "import boto3\n"  # line 5: c
        "from ..commands import ledger_cmds\n"  # line 6: f, relative
        "from launcher.ssh import client\n"  # line 7: cycle with ssh/client.py
    ),
    "launcher/train/quote.py": "from launcher.train.flow import x\n",  # back to flow (line 4 is TC)
    "launcher/ssh/__init__.py": "",
    "launcher/ssh/client.py": (
        "import paramiko\n"  # allowed
        "from launcher.train import flow\n"  # line 2: cycle with train/flow.py
    ),
    "launcher/providers/__init__.py": "",
    "launcher/providers/aws/__init__.py": "",
    "launcher/providers/aws/deep/__init__.py": "",
    "launcher/providers/aws/deep/x.py": "import boto3\nfrom botocore.config import Config\n",
    "launcher/status.py": "import importlib\nimportlib.import_module('paramiko')\n",  # 2: d
    "ledger/__init__.py": "",
    "ledger/alerts/__init__.py": "",
    "ledger/alerts/channels.py": (
        "def sns():\n"
        "    import boto3\n"  # allowed: lazy, in a function
        "from botocore import exceptions\n"  # line 3: c, module level
    ),
    "ledger/report.py": (
        "import launcher.output\n"  # line 1: b
        "if True:\n"
        "    import torch.nn\n"  # line 3: e
    ),
    "jobs/__init__.py": "",
    "jobs/fleet/__init__.py": "",
    "jobs/fleet/worker.py": "import boto3\nimport torch\n",  # allowed
    "jobs/htr/__init__.py": "",
    "jobs/htr/train.py": (
        "import torch\n"
        "from ledger import book\n"  # line 2: a (ledger; ledger.book is no module -> ledger)
        "def f():\n"
        "    from launcher.config import Settings\n"  # line 4: a (launcher)
    ),
}


@pytest.fixture
def fake_tree(tmp_path: Path) -> Tree:
    for rel, text in FAKE.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return scan(tmp_path)


@pytest.mark.parametrize(("rule", "expected"), [
    (lambda t: rule_jobs_import_nothing_of_ours(t, "launcher"),
     ["jobs/htr/train.py:4 imports launcher.config"]),
    (lambda t: rule_jobs_import_nothing_of_ours(t, "ledger"),
     ["jobs/htr/train.py:2 imports ledger"]),
    (rule_ledger_never_imports_launcher, ["ledger/report.py:1 imports launcher.output"]),
    (lambda t: rule_aws_sdk_only_at_its_edges(t, "boto3"), ["launcher/train/flow.py:5 imports boto3"]),
    (lambda t: rule_aws_sdk_only_at_its_edges(t, "botocore"),
     ["ledger/alerts/channels.py:3 imports botocore"]),
    (rule_paramiko_only_in_launcher_ssh, ["launcher/status.py:2 imports paramiko"]),
    (rule_torch_only_in_jobs, ["ledger/report.py:3 imports torch.nn"]),
    (rule_commands_imported_only_by_the_cli, [
        "launcher/commands/train_cmds.py:2 imports launcher.commands.ledger_cmds",
        "launcher/train/flow.py:6 imports launcher.commands.ledger_cmds"]),
], ids=["a-launcher", "a-ledger", "b", "c-boto3", "c-botocore", "d", "e", "f"])
def test_the_checker_reports_file_line_and_name(
        fake_tree: Tree, rule: Callable[[Tree], list[str]], expected: list[str]) -> None:
    found = rule(fake_tree)
    assert len(found) == len(expected), found
    for message, want in zip(sorted(found), sorted(expected), strict=True):
        assert message.startswith(want), (message, want)


def test_the_checker_finds_the_cycles_type_only_ones_too(fake_tree: Tree) -> None:
    found = rule_no_import_cycles(fake_tree)
    assert len(found) == 1, found
    # quote -> flow -> quote exists only under TYPE_CHECKING: it joins the knot all the same
    assert "['launcher.ssh.client', 'launcher.train.flow', 'launcher.train.quote']" in found[0]
    assert "launcher/train/flow.py:7 imports launcher.ssh.client" in found[0]
    assert "launcher/ssh/client.py:2 imports launcher.train.flow" in found[0]
    tc = [i for i in fake_tree.imports if i.type_checking]
    assert [(i.where(), i.target) for i in tc] == [("launcher/train/flow.py:4",
                                                    "launcher.train.quote")]


def test_the_checker_finds_a_cycle_made_only_of_type_hints(tmp_path: Path) -> None:
    (tmp_path / "ledger").mkdir()
    (tmp_path / "ledger/__init__.py").write_text("")
    (tmp_path / "ledger/a.py").write_text("import ledger.b\n")
    (tmp_path / "ledger/b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ledger.a import A\n")
    found = rule_no_import_cycles(scan(tmp_path, ("ledger",)))
    assert len(found) == 1, found
    assert "ledger/b.py:3 imports ledger.a (under TYPE_CHECKING)" in found[0], found


def test_the_checker_finds_a_self_import(tmp_path: Path) -> None:
    (tmp_path / "ledger").mkdir()
    (tmp_path / "ledger/__init__.py").write_text("")
    (tmp_path / "ledger/a.py").write_text("\n\nimport ledger.a\n")
    found = rule_no_import_cycles(scan(tmp_path, ("ledger",)))
    assert len(found) == 1 and "ledger/a.py:3 imports ledger.a" in found[0], found
