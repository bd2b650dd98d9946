"""Run integrity: an interrupted run resumes to exactly the rows of an uninterrupted one.

Each run is a real `python -m bench run` process on a slice of the real data. It is interrupted
once results.json holds a finished row, with Ctrl-C (SIGINT to the process group, as a terminal
sends it) or with SIGKILL to the group (power loss, OOM killer). results.json must still parse
(it is written atomically), and `run --resume` must finish with the same rows, statuses and
accuracies as the reference run. All runs share one cache folder, so the baseline trains once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bench.cli import main
from bench.rundir import RunLock
from tests.conftest import DEBIAN_DATA, REPO, TINY_CONFIG

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not DEBIAN_DATA.exists(), reason="dataset-fashion-mnist not installed")]

# One cheap chain that trains (prune + fine-tune, cached) and ends in an artifact pass (its model's rows and
# an int8 ONNX row), and an artifact pass on the baseline alone (an int8 ONNX row and a skipped torch row).
# Robustness and attacks are off: not under test here, and they double the run time.
CONFIG = TINY_CONFIG.replace("[benchmark]\n", "[benchmark]\nrobustness = false\nadversarial = false\n") + """
[[variants]]
name = "sparse-int8"
passes = ["prune.unstructured(sparsity=0.5)", "finetune(epochs=1)", "quantize.dynamic()"]

[[variants]]
name = "base-int8"
passes = ["quantize.dynamic()"]
"""
KEY = ("variant", "format", "precision", "runtime", "device")


def _load(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "results.json").read_text())


def _summary(document: dict[str, Any]) -> dict[tuple[str, ...], tuple[str, float | None]]:
    """Row key -> (status, top-1): what must match across runs (timings aside)."""
    keys = [tuple(r[k] for k in KEY) for r in document["rows"]]
    assert len(keys) == len(set(keys)), f"duplicate rows: {keys}"
    return {tuple(r[k] for k in KEY): (r["status"], (r.get("accuracy") or {}).get("top1")) for r in document["rows"]}


class Run:
    """`python -m bench run ...` in its own process group, with stderr kept in a file."""

    def __init__(self, folder: Path, *args: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.stderr_path = folder / "stderr.txt"
        env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
        with open(self.stderr_path, "w") as err:
            # A shell that starts a job in the background (`cmd &`) sets SIGINT to "ignore", children
            # inherit that, and Python then installs no KeyboardInterrupt handler: restore the default
            # so that Ctrl-C is tested however the test suite itself was started.
            self.proc = subprocess.Popen([sys.executable, "-m", "bench", "run", "--quiet", *args], cwd=folder, env=env,
                                         stdout=subprocess.DEVNULL, stderr=err, start_new_session=True,
                                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def wait(self, timeout: float = 240) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            raise

    def first_row(self, out: Path, timeout: float = 240) -> Path:
        """Wait until the run's results.json holds at least one finished row; return the run folder."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"the run ended before the first row:\n{self.stderr[-2000:]}"
            for results in out.glob("*/results.json"):
                if _load(results.parent)["rows"]:  # atomic writes: a reader never sees half a file
                    return results.parent
            time.sleep(0.1)
        os.killpg(self.proc.pid, signal.SIGKILL)
        raise AssertionError("no finished row within the timeout")

    def interrupt(self, sig: signal.Signals) -> int:
        os.killpg(self.proc.pid, sig)
        return self.wait(timeout=120)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("resume")
    (folder / "tiny.toml").write_text(CONFIG + f'\n[output]\ndir = "{folder / "results"}"\ncache_dir = "{folder / "cache"}"\n')
    return folder


@pytest.fixture(scope="module")
def reference(work: Path) -> dict[str, Any]:
    """An uninterrupted run of the config (it also fills the shared cache)."""
    run = Run(work / "reference", "--config", str(work / "tiny.toml"), "--quick", "--out", str(work / "reference" / "out"))
    assert run.wait() == 0, run.stderr[-2000:]
    (run_dir,) = (work / "reference" / "out").iterdir()
    document = _load(run_dir)
    assert document["status"] == "complete"
    statuses = {status for status, _ in _summary(document).values()}
    assert "ok" in statuses and "skipped" in statuses  # the comparison covers more than one kind of row
    return document


def _resume(work: Path, name: str, run_dir: Path) -> dict[str, Any]:
    run = Run(work / name, "--resume", str(run_dir))
    assert run.wait() == 0, run.stderr[-2000:]
    return _load(run_dir)


def _assert_kept(before: dict[str, Any], after: dict[str, Any]) -> None:
    """Rows finished before the interruption are kept as they were, not measured again."""
    rows_after = {tuple(r[k] for k in KEY): r for r in after["rows"]}
    for row in before["rows"]:
        assert rows_after[tuple(row[k] for k in KEY)] == row


def test_ctrl_c_then_resume_matches_an_uninterrupted_run(work: Path, reference: dict[str, Any]) -> None:
    out = work / "sigint" / "out"
    run = Run(work / "sigint", "--config", str(work / "tiny.toml"), "--quick", "--out", str(out))
    run_dir = run.first_row(out)
    assert run.interrupt(signal.SIGINT) == 130, run.stderr[-2000:]
    interrupted = _load(run_dir)
    assert interrupted["status"] == "incomplete"
    assert 1 <= len(interrupted["rows"]) < len(reference["rows"]), "interrupted too late to test resuming"
    assert f"edgebench run --resume {run_dir}" in run.stderr
    assert run.stderr.count("edgebench: interrupted") == 1  # the run's own line, not the CLI's too
    # A resumed variant is exported again, and a finished row stays only if its artifact comes out
    # as the file it measured (its artifact_sha256). Make that false for one row: stop the run inside
    # the row's variant (the state a kill between two rows leaves) and let the row have measured
    # another file than the export makes.
    changed = next(r for r in interrupted["rows"] if r.get("artifact"))
    interrupted["variants_done"] = [v for v in interrupted["variants_done"] if v != changed["variant"]]
    with open(run_dir / changed["artifact"], "ab") as artifact:
        artifact.write(b"changed")
    changed["artifact_sha256"] = hashlib.sha256((run_dir / changed["artifact"]).read_bytes()).hexdigest()
    (run_dir / "results.json").write_text(json.dumps(interrupted))
    resumed = _resume(work, "sigint-resume", run_dir)
    assert resumed["status"] == "complete"
    assert _summary(resumed) == _summary(reference)
    log = (run_dir / "logs" / "run.log").read_text()
    assert "exported again, its artifact is not the file it measured" in log
    assert f"run {run_dir.name} (resumed): " in log  # the log tells the resumed part from the first
    _assert_kept({"rows": [r for r in interrupted["rows"] if r is not changed]}, resumed)
    assert [r for r in resumed["rows"] if r.get("artifact") == changed["artifact"]] != [changed]  # measured again


def test_kill_9_then_resume_matches_and_the_lock_keeps_out_a_second_writer(
        work: Path, reference: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    out = work / "sigkill" / "out"
    run = Run(work / "sigkill", "--config", str(work / "tiny.toml"), "--quick", "--out", str(out))
    run_dir = run.first_row(out)
    assert run.interrupt(signal.SIGKILL) == -signal.SIGKILL
    killed = _load(run_dir)  # parses: every write was atomic
    assert killed["status"] == "running" and killed["rows"]
    assert not list(run_dir.glob(".results.json.*.tmp")), "a temp file was left next to results.json"

    # While another process holds the run folder, a second writer is refused with one clear line.
    logger = logging.getLogger("edgebench")
    handlers = list(logger.handlers)
    capsys.readouterr()
    with RunLock(run_dir):
        code = main(["run", "--resume", str(run_dir), "--quiet"])
    assert logger.handlers == handlers, "the refused run left its log handler on the logger"
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "in use" in err[0] and str(run_dir) in err[0], err
    assert _load(run_dir) == killed, "the refused process changed results.json"

    resumed = _resume(work, "sigkill-resume", run_dir)
    assert resumed["status"] == "complete"
    assert _summary(resumed) == _summary(reference)
    _assert_kept(killed, resumed)
