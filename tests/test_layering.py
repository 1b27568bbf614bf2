"""One-way imports: the model never imports training, evaluation, data, app or CLI code."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "findvl"
LOWER = ["model", "encoders", "prototypes.py", "layers.py", "config.py"]
FORBIDDEN = (
    "findvl.train",
    "findvl.eval",
    "findvl.data",
    "findvl.app",
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


def _files(entry: str) -> list[Path]:
    p = SRC / entry
    return sorted(p.rglob("*.py")) if p.is_dir() else [p]


@pytest.mark.parametrize("entry", LOWER)
def test_lower_layers_do_not_import_upper_layers(entry):
    for path in _files(entry):
        bad = [n for n in _imports(path) if n.startswith(FORBIDDEN)]
        assert not bad, f"{path.relative_to(SRC)} imports {bad}"


def test_encoders_do_not_import_the_model():
    for path in _files("encoders"):
        bad = [n for n in _imports(path) if n.startswith("findvl.model")]
        assert not bad, f"{path.relative_to(SRC)} imports {bad}"


def test_command_line_starts_without_torch() -> None:
    """``findvl -h`` and ``findvl data synth`` must not pay for importing torch."""
    code = (
        "import sys\n"
        "from findvl.cli import build_parser\n"
        "build_parser()\n"
        "import findvl.data.synth\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
