"""Progress bars: redrawn live on a terminal, an update every 30 s when stderr goes to a file.

Why: tqdm redraws with carriage returns up to 10 times a second; in a redirected log (`make bench
> run.txt`, CI) every redraw is kept, and a default run wrote thousands of them.
"""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm


def progress_bar(*, total: int, desc: str, unit: str, quiet: bool = False, **options: Any) -> tqdm:
    interactive = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
    return tqdm(total=total, desc=desc, unit=unit, disable=quiet, mininterval=0.1 if interactive else 30.0, **options)
