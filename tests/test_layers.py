"""The house in layers: every import inside demo/ points down (engine < toy, science, serving < ui < tools), the
engine imports no Gradio, threads, files or pictures, and no file grows past ~300 lines."""
from __future__ import annotations

import ast
from pathlib import Path

DEMO = Path(__file__).resolve().parent.parent / "demo"
LEVEL = {"engine": 0, "toy": 1, "science": 1, "serving": 1, "ui": 2, "tools": 3}
NOT_IN_ENGINE = {"gradio", "threading", "matplotlib", "PIL", "gradio_client", "playwright"}


def imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
    return found


def test_imports_point_down_and_the_engine_is_torch_only():
    wrong = []
    for path in DEMO.rglob("*.py"):
        parts = path.relative_to(DEMO).parts
        if len(parts) < 2:
            continue                                       # demo/train.py, demo/bench.py: entry points on top
        layer = parts[0]
        for module in imports(path):
            names = module.split(".")
            if names[0] == "demo" and len(names) > 1 and names[1] in LEVEL and names[1] != layer \
                    and LEVEL[names[1]] >= LEVEL[layer]:
                wrong.append(f"{path.relative_to(DEMO)} imports {module}")
            if layer == "engine" and names[0] in NOT_IN_ENGINE:
                wrong.append(f"{path.relative_to(DEMO)} imports {module}")
    assert not wrong, wrong


def test_no_file_is_much_over_300_lines():
    long = {str(p.relative_to(DEMO.parent)): n for p in [*DEMO.rglob("*.py"), DEMO.parent / "app.py"]
            if (n := len(p.read_text().splitlines())) > 330}
    assert not long, long
