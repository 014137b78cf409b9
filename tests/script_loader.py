"""Loads a command-line script as a module (scripts are commands, not a package): a file of
scripts/ (recipe stage tools) or scripts/bench/ (benchmarks, checks) by name, or any file
(local/, a recipe's local/) by path. Each is loaded once per name; test modules share it."""

import importlib.util
import sys
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"


def load_file(path: Path, name: Optional[str] = None):
    name = name or Path(path).stem
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_script(name: str):
    path = SCRIPTS / f"{name}.py"
    return load_file(path if path.exists() else SCRIPTS / "bench" / f"{name}.py", name)
