"""A custom model's source tree for the cache-key tests: a module, a sibling module, a package with
relative imports (in its __init__ too), a namespace package, and a package the model never imports."""

from __future__ import annotations

from pathlib import Path


def write_user_code(root: Path, p: str) -> None:
    """Modules named with prefix p: a lookup answers from sys.modules once a name has been imported,
    so each test needs its own names."""
    (root / f"{p}net.py").write_text(
        "import json\nimport numpy as np\nimport not_installed_anywhere\n"
        f"from {p}blocks import block\nfrom {p}pkg.layers import conv\nimport {p}ns.helpers\n\n"
        "def net():\n    return block()\n")
    (root / f"{p}blocks.py").write_text("def block():\n    return 1\n")
    pkg = root / f"{p}pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from .registry import REGISTERED\n")  # runs on `import pkg.layers`
    (pkg / "registry.py").write_text("REGISTERED = {}\n")
    (pkg / "layers.py").write_text("from . import init\nfrom .. import nothing_above_the_top\n\n"
                                   "def conv():\n    from .lazy import later  # inside a function: still code of the model\n")
    (pkg / "lazy.py").write_text("def later():\n    return 0\n")
    (pkg / "init.py").write_text(f"SCALE = 1\nif False:\n    from {p}pkg.broken.sub import x\n")
    # never imported by code that runs; finding broken.sub must not run broken/__init__.py
    (pkg / "broken").mkdir()
    (pkg / "broken" / "__init__.py").write_text(f"open({str(root / 'ran.txt')!r}, 'w').close()\nraise RuntimeError('ran')\n")
    (pkg / "broken" / "sub.py").write_text("x = 1\n")
    (root / f"{p}ns").mkdir()  # a namespace package (no __init__.py)
    (root / f"{p}ns" / "helpers.py").write_text("K = 1\n")
