"""The promises to a new user: the README's commands, CI, the layout."""
import json
import re
from pathlib import Path
from typing import Dict, Optional

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
# Layers, lowest first, one folder or top-level module each (docs/ARCHITECTURE.md draws them): a module may import from
# its own layer and the ones below, never above (cli → train / eval → renderers → models, scenes → the AutoInt core).
LAYERS = (
    ("core", ("autoint_cli.autoint",)),
    ("basics", ("autoint_cli.utils", "autoint_cli.volume")),
    ("config", ("autoint_cli.config",)),
    ("models and scenes", ("autoint_cli.models", "autoint_cli.scene")),
    ("renderers", ("autoint_cli.render", "autoint_cli.runs", "autoint_cli.viewer")),
    ("applications", ("autoint_cli.train", "autoint_cli.evaluate", "autoint_cli.experiments")),
    ("cli", ("autoint_cli.cli", "autoint_cli.__main__", "autoint_cli")),
)
MAX_FUNCTION_LINES = 60


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(name: str, path: Path, source: str, modules: set) -> set:
    """The package modules that ``source`` (module ``name`` at ``path``) imports, imports inside functions included."""
    import ast

    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    deps = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            submodules = {f"{target}.{a.name}" for a in node.names} & modules
            deps |= submodules if submodules and len(submodules) == len(node.names) else {target} | submodules
        elif isinstance(node, ast.Import):
            deps |= {a.name for a in node.names}
    return {d for d in deps if d in modules and d != name}


def import_graph(sources: Optional[Dict[str, str]] = None) -> dict:
    """Every module of the package and the package modules it imports; ``sources`` replaces some modules' text (by name)."""
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    sources = sources or {}
    return {name: _imports(name, path, sources.get(name, path.read_text()), set(paths)) for name, path in paths.items()}


def _layer(module: str) -> int:
    matches = [(len(prefix), i) for i, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes
               if module == prefix or module.startswith(prefix + ".")]
    assert matches, f"{module} is in no layer of LAYERS"
    return max(matches)[1]


def upward_imports(graph: dict) -> list:
    return [f"{m} ({LAYERS[_layer(m)][0]}) imports {d} ({LAYERS[_layer(d)][0]})" for m, deps in graph.items() for d in deps
            if _layer(d) > _layer(m)]


def test_imports_point_down_the_layers():
    assert upward_imports(import_graph()) == []


def test_an_upward_import_is_caught():
    """The check itself: a scene loader that imported the Renderer, or the core a model, would fail it (placed here, not in
    the code)."""
    loader = (PACKAGE / "scene" / "blender.py").read_text() + "\nfrom ..render.renderer import Renderer\n"
    core = (PACKAGE / "autoint" / "layers.py").read_text() + "\n\ndef later():\n    from ..models import SceneModel\n"
    found = sorted(upward_imports(import_graph({"autoint_cli.scene.blender": loader, "autoint_cli.autoint.layers": core})))
    assert found == ["autoint_cli.autoint.layers (core) imports autoint_cli.models (models and scenes)",
                     "autoint_cli.scene.blender (models and scenes) imports autoint_cli.render.renderer (renderers)"]


def test_every_folder_of_the_package_is_one_layer():
    """A newcomer can tell a folder's layer from its name: every module in it is in the folder's layer."""
    for folder in sorted(p for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()):
        layers = {LAYERS[_layer(_module_name(m))][0] for m in folder.rglob("*.py")}
        assert len(layers) == 1, f"{folder.name}: {sorted(layers)}"


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
    allowed = {"autoint_cli/cli.py", "autoint_cli/utils/fastpath.py"}  # fastpath: scoped contexts that restore the flags
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


# The quality figures the README and the recipes' configs quote, and the benchmark JSON (scripts/bench_quality.py) each
# comes from: (JSON, split, renderer key, the words after the figure).
QUOTED_FIGURES = (
    ("docs/results/quality_lego_400s_h100/n16m2_k1_seeds01.json", "test", "16", " dB on all 200 lego test views", "configs/lego_fast_n16_m2.txt"),
    ("docs/results/quality_lego_400s_h100/negative_sigma_seeds012.json", "test", "16", " dB without `colour_by_density`", None),
    ("docs/results/quality_lego_400s_h100/negative_sigma_seeds012.json", "test", "16x4", " dB rendered with `--refine 4", None),
    ("docs/results/quality_lego_400s_h200/n32m1_k1_seeds12.json", "test", "32", " dB on all 200 lego test views rendered at `--n_sections 32`",
     "configs/lego_fast_n32_m1.txt"),
    ("docs/results/quality_lego_400s_h200/n32m1_k1_seeds12.json", "test", "16", " dB rendered at N = 16", None),
    ("docs/results/quality_lego_400s_h100/n32m1_seeds12.json", "test", "32", " dB at N = 32 and", None),
    ("docs/results/quality_fern_400s.json", "test", "16", " dB on fern's 3 test views", "configs/fern_fast.txt"),
)


def test_quoted_quality_figures_are_the_benchmarks_means_over_seeds():
    readme = " ".join((ROOT / "README.md").read_text().split())
    for path, split, key, words, config in QUOTED_FIGURES:
        report = json.loads((ROOT / path).read_text())
        assert report["benchmark"] == "scripts/bench_quality.py" and report["summary"]["n_seeds"] >= 2, path
        stats = report["summary"][split][key]
        figure = f"{stats['psnr_mean']:.2f} ± {stats['psnr_std']:.2f}"
        assert f"{figure}{words}" in readme, f"README.md should quote {figure} dB from {path}"
        assert f"`{path}`" in readme, f"README.md should name {path}"
        if config:
            text = (ROOT / config).read_text()
            assert figure.replace("±", "+-") in text and path in " ".join(text.replace("#", " ").split()), config
