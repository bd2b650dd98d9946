"""The run folder: its id, its lock, and results.json kept current after every finished row."""

from __future__ import annotations

import fcntl
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.errors import UserError
from bench.files import atomic_write_json
from bench.results import SCHEMA_VERSION, Row, row_key, write_csv


def new_run_id(config_digest: str) -> str:
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{config_digest}"


def create_run_dir(parent: Path, config_digest: str) -> Path:
    """A new, empty run folder under `parent`, named by the time and the config digest. Two runs of one
    config started in the same second get -2, -3, ... rather than the second one failing."""
    run_id = new_run_id(config_digest)
    for attempt in range(1, 100):
        run_dir = parent / (run_id if attempt == 1 else f"{run_id}-{attempt}")
        try:
            run_dir.mkdir(parents=True, exist_ok=False)
            return run_dir
        except FileExistsError:
            if run_dir.exists():  # another run of this config in this second: take the next name
                continue
            raise UserError(f"cannot create the run folder {run_dir}: a part of {parent} exists but is not a folder "
                            "(a file or a broken link)") from None
        except OSError as exc:
            raise UserError(f"cannot create the run folder {run_dir}: {exc.strerror or exc}") from None
    raise UserError(f"cannot create a run folder {run_id} under {parent}: 99 of that name exist already")


class RunLock:
    """An exclusive lock on a run folder, so two processes never write the same run."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / ".lock"
        self._fd: int | None = None

    def __enter__(self) -> "RunLock":
        self._fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            self._fd = None
            raise UserError(f"run folder {self.path.parent} is in use by another edgebench process") from None
        os.ftruncate(self._fd, 0)
        os.write(self._fd, str(os.getpid()).encode())
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def in_use(run_dir: Path) -> bool:
    """Whether another process holds the run folder's lock (a run or an explanation writing it now)."""
    try:
        fd = os.open(run_dir / ".lock", os.O_RDONLY)
    except OSError:
        return False  # no lock file: never locked
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except BlockingIOError:
        return True
    except OSError:  # a file system without flock: cannot tell, so say nothing of a lock
        return False
    finally:
        os.close(fd)


class RunWriter:
    """Owns results.json / results.csv of one run; every change is written atomically at once."""

    def __init__(self, run_dir: Path, document: dict[str, Any]) -> None:
        self.run_dir = run_dir
        self.document = document
        self.document.setdefault("schema_version", SCHEMA_VERSION)
        self.document.setdefault("rows", [])
        self.flush()

    @property
    def rows(self) -> list[dict[str, Any]]:
        return self.document["rows"]

    def add_row(self, row: Row) -> None:
        self.rows.append(row.to_dict())
        self.flush()

    def drop_rows(self, variant: str, keep: set[tuple[str, ...]]) -> list[dict[str, Any]]:
        """Remove the variant's rows whose (variant, format, precision, runtime, device) is not in `keep`;
        returns them. Not written until the next change."""
        def stale(row: dict[str, Any]) -> bool:
            return row.get("variant") == variant and row_key(row) not in keep

        dropped = [r for r in self.rows if stale(r)]
        self.document["rows"] = [r for r in self.rows if not stale(r)]
        return dropped

    def update(self, **fields: Any) -> None:
        self.document.update(fields)
        self.flush()

    def flush(self) -> None:
        atomic_write_json(self.run_dir / "results.json", self.document)
        write_csv(self.run_dir / "results.csv", self.rows)
