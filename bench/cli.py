"""The `edgebench` command line. Heavy frameworks are imported inside the commands, so --help is fast."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import TYPE_CHECKING, Any, NoReturn

from bench.cli_args import path_arg
from bench.errors import UserError, exception_line

if TYPE_CHECKING:  # the config module is imported by the commands that need it, not by --help
    from bench.config import Config

DESCRIPTION = """\
Benchmark compressed CNNs on their real edge runtimes.

edgebench trains (or loads) a baseline CNN on Fashion-MNIST, applies compression passes
(pruning, distillation, quantization and chains of them), exports every variant to ONNX and
TFLite, measures each artifact on PyTorch, ONNX Runtime and LiteRT (latency, throughput, size,
memory, accuracy), and writes results/<run-id>/results.json, results.csv and a report.
"""

EPILOG = """\
examples:
  edgebench run                        the default benchmark (built-in config)
  edgebench run --quick                the same with short timings (a smoke run)
  edgebench run --print-config > my.toml; edgebench run --config my.toml
  edgebench list                       datasets, models, passes, formats, runtimes
"""


def _cmd_run(args: argparse.Namespace) -> int:
    from bench.config import config_from_dict, load_config
    from bench.config_toml import to_toml

    if args.resume:
        if args.config:
            raise UserError("--resume continues a run with the config it started with; drop --config")
        if args.out:
            raise UserError("--resume continues a run in its own folder; drop --out")
        from bench.resume import load_results

        document = load_results(args.resume)
        if document.get("status") == "complete":
            raise UserError(f"{args.resume} is already complete; nothing to resume")
        if args.quick and not document.get("quick"):
            raise UserError(f"{args.resume} was not a --quick run, and its rows must be timed alike; drop --quick")
        config = config_from_dict(document["config"], f"{args.resume}/results.json config")
        args.quick = bool(document.get("quick"))
        saved = document.get("run_options") or {}
        args.checkpoint = args.checkpoint or saved.get("checkpoint") or ""
        args.data_dir = args.data_dir or saved.get("data_dir") or ""
        args.no_explain = args.no_explain or saved.get("explain") is False
    else:
        config = load_config(args.config)
    if args.print_config:
        print(to_toml(_with_command_line(config, args)), end="")
        return 0
    from bench.pipeline import RunOptions, run

    options = RunOptions(quick=args.quick, checkpoint=args.checkpoint or "", data_dir=args.data_dir or "",
                         explain=False if args.no_explain else None, out_dir=args.out or "", quiet=args.quiet,
                         resume=args.resume or "")
    run(config, options)
    return 0


def _with_command_line(config: Config, args: argparse.Namespace) -> Config:
    """The config as this command line would run it: --checkpoint, --data-dir, --out and --no-explain set config keys."""
    from dataclasses import replace

    return replace(config,
                   baseline=replace(config.baseline, checkpoint=args.checkpoint or config.baseline.checkpoint),
                   data=replace(config.data, data_dir=args.data_dir or config.data.data_dir),
                   output=replace(config.output, dir=args.out or config.output.dir),
                   explain=replace(config.explain, enabled=config.explain.enabled and not args.no_explain))


def _cmd_list(args: argparse.Namespace) -> int:
    from bench.listing import listing

    print(listing())
    return 0


class _OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit 2), like every other edgebench error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def parse_args(self, args: Any = None, namespace: Any = None) -> argparse.Namespace:  # type: ignore[override]
        """As argparse's, but an unknown option points at the help of the command it was given to."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            command = getattr(parsed, "command", None)
            self.exit(2, f"{self.prog}: error: unrecognized arguments: {' '.join(extras)} "
                         f"(see {self.prog}{f' {command}' if command else ''} --help)\n")
        return parsed


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="edgebench", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show full tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    run = sub.add_parser("run", help="run a benchmark and write results/<run-id>/",
                         description="Train or load the baseline, build every variant, export, measure, report.",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("--config", type=path_arg, metavar="FILE", help="TOML config (default: the built-in config; see --print-config)")
    run.add_argument("--out", type=path_arg, metavar="DIR", help="parent folder of the run folder (default: [output].dir); the weight cache stays at [output].cache_dir, shared by runs")
    run.add_argument("--quick", action="store_true", help="short warm-up and timing: a smoke run, not publishable latencies")
    run.add_argument("--checkpoint", type=path_arg, metavar="PATH", help="baseline weights: a state_dict (.pt/.pth, loaded weights_only) or .safetensors")
    run.add_argument("--data-dir", type=path_arg, metavar="DIR", help="folder with the Fashion-MNIST IDX files (or the ImageFolder root)")
    run.add_argument("--no-explain", action="store_true", help="skip SHAP explanations")
    run.add_argument("--resume", type=path_arg, metavar="RUN_DIR", help="continue an interrupted run in its folder, with its config and timing "
                     "(--quick follows the run): finished rows are kept, the rest recomputed")
    run.add_argument("--print-config", action="store_true", help="print the config this command line would run (the file over the built-in defaults, "
                     "with --checkpoint, --data-dir, --out and --no-explain folded in) as commented TOML and exit; --quick is not a config key")
    run.add_argument("--quiet", action="store_true", help="no progress bars or summary: print only the path of the run's results.json")
    run.set_defaults(func=_cmd_run)

    lst = sub.add_parser("list", help="list datasets, models, passes, formats and runtimes",
                         description="Print what a config can name: the datasets, the model zoo, every compression pass "
                                     "with its parameters, defaults and the formats it supports, the export formats and "
                                     "precisions, and the runtimes installed here.")
    lst.set_defaults(func=_cmd_list)

    # the other commands live in their own modules (keeps this file small); each registers its parser
    from bench import cli_ab, cli_explain, cli_inspect, cli_report

    for module in (cli_report, cli_explain, cli_inspect, cli_ab):
        module.register(sub)
    for command in sub.choices.values():  # `edgebench run ... --debug` works too; SUPPRESS keeps a leading --debug
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks for errors")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside the handlers below, not at interpreter exit
        return code
    except UserError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"edgebench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        if not getattr(exc, "announced", False):  # a run says how to resume instead
            print("edgebench: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError as exc:
        if _stdout_is_closed():  # the reader went away (`edgebench compare A B | head`): stop quietly, as on SIGPIPE
            return 141  # 128 + SIGPIPE, never 1: that is compare's "a gate failed"
        return _unexpected(exc, args.debug)  # another pipe (a worker's) broke: a real error
    except (FileExistsError, IsADirectoryError, NotADirectoryError, PermissionError) as exc:
        # the user's folders are in the way (a file where a folder must go, or no permission): say which path
        if args.debug:
            traceback.print_exc()
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"edgebench: error: {where}{exc.strerror or exc} (a file or folder in the way, or no permission)",
              file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - not the user's input: still one line, the traceback behind --debug
        return _unexpected(exc, args.debug)


def _unexpected(exc: BaseException, debug: bool) -> int:
    if debug:
        traceback.print_exception(exc)
    print(f"edgebench: error: unexpected {exception_line(exc, 300)} (run again with --debug for the traceback)",
          file=sys.stderr)
    return 1


def _stdout_is_closed() -> bool:
    """Whether stdout's reader has gone (poll reports an error on the pipe); if so, stdout is pointed at
    /dev/null so the interpreter's final flush stays quiet."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        closed = any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll here, or stdout is no file
        return False
    if closed:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return closed


if __name__ == "__main__":
    sys.exit(main())
