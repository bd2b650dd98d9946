"""Progress bars: redrawn live on a terminal, an update every 30 s when stderr goes to a file.

Why: tqdm redraws with carriage returns up to 10 times a second; in a redirected log (`make bench
> run.txt`, CI) every redraw is kept, and a default run wrote thousands of them.
"""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm


def progress_bar(*, total: int, desc: str, unit: str, quiet: bool = False, **options: Any) -> tqdm:
    """A tqdm bar; callers update its postfix with refresh=False, so only the interval redraws it."""
    interactive = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
    interval = 0.1 if interactive else 30.0
    # maxinterval too: tqdm's monitor thread otherwise forces a redraw every 10 s
    return tqdm(total=total, desc=desc, unit=unit, disable=quiet, mininterval=interval,
                maxinterval=max(interval, 10.0), **options)
