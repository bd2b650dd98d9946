"""Progress bars redraw live on a terminal and rarely in a log file."""

import io

from bench import progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_redraws_rarely_when_stderr_is_a_file(monkeypatch):
    monkeypatch.setattr(progress.sys, "stderr", io.StringIO())
    with progress.progress_bar(total=3, desc="x", unit="step", file=io.StringIO()) as bar:
        assert bar.mininterval == 30.0
    monkeypatch.setattr(progress.sys, "stderr", _Terminal())
    with progress.progress_bar(total=3, desc="x", unit="step", file=io.StringIO()) as bar:
        assert bar.mininterval == 0.1
    with progress.progress_bar(total=3, desc="x", unit="step", quiet=True) as bar:
        assert bar.disable
