"""One-way imports: the model never imports training, evaluation, data, demo or CLI code; the
metrics and the data readers know no model; no library module imports the command line."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "findvl"
LOWER = ["model", "encoders", "prototypes.py", "layers.py", "config.py"]
FORBIDDEN = (
    "findvl.train",
    "findvl.metrics",
    "findvl.evaluation",
    "findvl.data",
    "findvl.demo",
    "findvl.cli",
    "findvl.predictor",
    "findvl.index",
)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def _within(name: str, packages: tuple[str, ...]) -> bool:
    """``name`` is one of ``packages`` or inside one (``findvl.model_file`` is not in
    ``findvl.model``)."""
    return any(name == p or name.startswith(p + ".") for p in packages)


def _files(entry: str) -> list[Path]:
    p = SRC / entry
    return sorted(p.rglob("*.py")) if p.is_dir() else [p]


@pytest.mark.parametrize("entry", LOWER)
def test_lower_layers_do_not_import_upper_layers(entry):
    for path in _files(entry):
        bad = [n for n in _imports(path) if _within(n, FORBIDDEN)]
        assert not bad, f"{path.relative_to(SRC)} imports {bad}"


def test_encoders_do_not_import_the_model():
    for path in _files("encoders"):
        bad = [n for n in _imports(path) if _within(n, ("findvl.model",))]
        assert not bad, f"{path.relative_to(SRC)} imports {bad}"


# pure layers: what they may import from findvl (nothing else of it)
PURE = {
    "metrics": ("findvl.metrics", "findvl.jsonio", "findvl.images", "findvl.panoptic_ids"),
    "data": (
        "findvl.data",
        "findvl.jsonio",
        "findvl.images",
        "findvl.panoptic_ids",
        "findvl.encoders",  # the segment embedders of data.engine.reference_vision
    ),
}


@pytest.mark.parametrize("entry", sorted(PURE))
def test_metrics_and_data_know_no_model(entry):
    for path in _files(entry):
        own = [n for n in _imports(path) if _within(n, ("findvl",))]
        bad = [n for n in own if not _within(n, PURE[entry])]
        assert not bad, f"{path.relative_to(SRC)} imports {bad}"


def test_no_library_module_imports_the_command_line():
    """Only ``findvl.cli`` itself and ``python -m findvl`` may import ``findvl.cli``."""
    library = [
        p
        for p in sorted(SRC.rglob("*.py"))
        if p.relative_to(SRC).parts[0] != "cli" and p.name != "__main__.py"
    ]
    assert len(library) > 50
    for path in library:
        bad = [n for n in _imports(path) if _within(n, ("findvl.cli",))]
        assert not bad, f"{path.relative_to(SRC)} imports {bad}"


# the layers of docs/architecture.md, top first: a module imports from its layer and below
LAYERS = [
    ("cli", "__main__"),
    ("quickstart", "report", "report_pictures", "demo"),
    ("evaluation", "index", "train", "pretrain", "convert", "export"),
    ("predictor", "runs"),
    ("build", "model_file", "run_files"),
    ("model", "postprocess"),
    ("encoders", "prototypes", "layers"),
    ("config", "presets", "released"),
    ("data", "metrics"),
    ("images", "jsonio", "panoptic_ids", "tables", "viz"),
]
# the documented exceptions: (importing top-level entry, imported module)
UPWARD = {("data", "findvl.encoders.preprocess"), ("data", "findvl.encoders.vision")}
UPWARD |= {("layers", "findvl.model.blocks")}


def test_every_import_goes_down_the_layers():
    level = {name: -i for i, names in enumerate(LAYERS) for name in names}
    for path in sorted(SRC.rglob("*.py")):
        top = path.relative_to(SRC).parts[0].removesuffix(".py")
        if top in ("__init__", "pretrained"):
            continue
        assert top in level, f"{top} is in no layer of docs/architecture.md"
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] != "findvl" or len(parts) < 2 or (top, name) in UPWARD:
                continue
            assert parts[1] in level, f"{path.relative_to(SRC)} imports {name}: in no layer"
            assert level[parts[1]] <= level[top], f"{path.relative_to(SRC)} imports {name}"


def test_command_line_starts_without_torch() -> None:
    """``findvl -h`` and ``findvl data synth`` must not pay for importing torch."""
    code = (
        "import sys\n"
        "from findvl.cli import build_parser\n"
        "build_parser()\n"
        "import findvl.data.synth.write\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
