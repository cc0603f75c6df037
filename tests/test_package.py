"""The promises to a new user: the README's commands, CI, the layout."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_bash_blocks():
    return re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def test_ci_runs_the_readme_test_command_exactly():
    blocks = [b.strip() for b in readme_bash_blocks()]
    test_command = next(b for b in blocks if "pytest" in b)
    ci_lines = [line for line in (ROOT / ".ci/run").read_text().splitlines() if line and not line.startswith("#")]
    assert test_command in ci_lines


def test_readme_python_example_runs():
    (example,) = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    namespace: dict = {}
    exec(compile(example.replace("print(", "str("), "README.md", "exec"), namespace)
    assert namespace["sigma"].shape == (1024, 64, 1)
    assert namespace["section"].shape == (1024, 63, 1)


def test_layout():
    for path in ("autoint_cli/__init__.py", "autoint_cli/autoint/__init__.py", "scripts", "configs", "setup.cfg", "pyproject.toml", "data/README.md", "logs/README.md"):
        assert (ROOT / path).exists(), path
    ignored = (ROOT / ".gitignore").read_text()
    assert "data/*" in ignored and "logs/*" in ignored


PACKAGE = ROOT / "autoint_cli"
# Layers, lowest first: a module may import from its own layer and the ones below, never above
# (cli → train / render / eval → models, renderers, data → the AutoInt core).
LAYERS = (
    ("core", ("autoint_cli.autoint",)),
    ("basics", ("autoint_cli.rays", "autoint_cli.sampling", "autoint_cli.render", "autoint_cli.fastpath", "autoint_cli.checkpoint",
                "autoint_cli.distributed", "autoint_cli.metrics", "autoint_cli.media", "autoint_cli.chunks", "autoint_cli.atomic")),
    ("config", ("autoint_cli.config",)),
    ("models and data", ("autoint_cli.models", "autoint_cli.data")),
    ("renderers", ("autoint_cli.renderer", "autoint_cli.run_loader", "autoint_cli.views", "autoint_cli.frames", "autoint_cli.viewer")),
    ("applications", ("autoint_cli.train", "autoint_cli.evaluate", "autoint_cli.ct", "autoint_cli.fit1d")),
    ("cli", ("autoint_cli.cli", "autoint_cli.__main__", "autoint_cli")),
)
MAX_FUNCTION_LINES = 60


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict:
    """Every module of the package and the package modules it imports, imports inside functions included."""
    import ast

    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                submodules = {f"{target}.{a.name}" for a in node.names} & set(modules)
                deps |= submodules if submodules and len(submodules) == len(node.names) else {target} | submodules
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def _layer(module: str) -> int:
    matches = [(len(prefix), i) for i, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes
               if module == prefix or module.startswith(prefix + ".")]
    assert matches, f"{module} is in no layer of LAYERS"
    return max(matches)[1]


def test_imports_point_down_the_layers():
    graph = import_graph()
    upward = [f"{m} ({LAYERS[_layer(m)][0]}) imports {d} ({LAYERS[_layer(d)][0]})" for m, deps in graph.items() for d in deps if _layer(d) > _layer(m)]
    assert upward == []


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    state, cycles = {}, []

    def visit(module, path):
        state[module] = "open"
        for dep in sorted(graph[module]):
            if state.get(dep) == "open":
                cycles.append(path[path.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, path + [dep])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_only_the_cli_reads_argv_or_sets_global_torch_flags():
    allowed = {"autoint_cli/cli.py", "autoint_cli/fastpath.py"}  # fastpath: scoped contexts that restore the flags
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        name = str(path.relative_to(ROOT))
        if name not in ("autoint_cli/cli.py", "autoint_cli/__main__.py"):
            assert "configargparse" not in text and "sys.argv" not in text, name
        if name not in allowed:
            assert "allow_tf32 =" not in text and "set_default_dtype" not in text, name


def test_functions_are_short():
    """No function of the package over MAX_FUNCTION_LINES lines, Triton kernels aside."""
    import ast

    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not any("jit" in ast.unparse(d) for d in node.decorator_list):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert long == []
