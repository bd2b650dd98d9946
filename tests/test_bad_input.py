"""Every error a user can cause ends in one line on stderr, exit code 2, no traceback, nothing written.

One table of cases drives the real CLI (`bench.cli.main`, in-process; a few also as a subprocess).
Each case builds its bad input under tmp_path and returns the argv; the test checks the exit code,
that stderr is exactly one "edgebench: error:" line holding the case's key words, and that nothing
under tmp_path changed (so a rejected run leaves no run folder, cache or results file behind).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from bench.cli import main
from tests.results_documents import minimal_document
from tests.bad_input_files import (bad_tflite, damaged_pt2, external_onnx, fake_data, idx_bytes, mkdir_p,
                                   onnx_reading_an_undefined_tensor, onnx_with_a_name_that_is_not_utf8, results_json, toml, write_file, zip_without_program)
from tests.bad_input_commands import (ckpt_command, config_command, data_command, model_command, model_spec_command,
                                      run_command, variant)
from tests.bad_input_files import TINY_RUN_CONFIG as GOOD_CONFIG


@dataclass(frozen=True)
class Case:
    id: str
    setup: Callable[[Path], list[str]]  # builds files under the tmp dir, returns argv after "edgebench"
    words: tuple[str, ...]  # all must appear in the error line (case-insensitive)
    after: Callable[[Path], None] | None = None  # an extra check, e.g. a payload never ran


def _no_marker(tmp: Path) -> None:
    assert not (tmp / "PWNED").exists(), "the pickle payload ran"


_ROW = {"variant": "baseline", "lineage": [], "format": "onnx", "precision": "fp32", "runtime": "onnxruntime", "status": "ok"}
_NAN_TOP1 = {**_ROW, "accuracy": {"top1": float("nan"), "n": 1}}  # Python's JSON writes and reads NaN
_LATENCY = {"batch_size": 1, "threads": 1, "unit": "ms", "n": 100, "p50": 1.0, "p90": 1.0, "p99": 1.0, "mean": 1.0}
_NAN_P50 = {**_ROW, "latency": [{**_LATENCY, "p50": float("nan")}]}
_INF_P50 = {**_ROW, "latency": [{**_LATENCY, "p50": float("inf")}]}


CASES = [
    # config file
    Case("config-missing", lambda tmp: ["run", "--config", str(tmp / "nope.toml")], ("config file not found", "nope.toml")),
    Case("config-is-directory", lambda tmp: ["run", "--config", str(tmp)], ("cannot be read", "IsADirectoryError")),
    Case("config-invalid-utf8", lambda tmp: ["run", "--config", str(toml(tmp, b"[data]\nseed = 1 # \xff\xfe\n"))], ("cannot be read", "utf-8")),
    Case("config-invalid-toml", config_command("[data\nseed = 1\n"), ("not valid TOML", "line 1")),
    Case("config-unknown-section", config_command("[benchmarks]\nthreads = [1]\n"), ("unknown section [benchmarks]", "did you mean 'benchmark'")),
    Case("config-unknown-key", config_command("[baseline]\nepoch = 3\n"), ("[baseline]", "unknown key 'epoch'", "did you mean 'epochs'")),
    Case("config-wrong-type", config_command('[baseline]\nepochs = "five"\n'), ("[baseline].epochs", "expected int", "'five'")),
    Case("config-section-not-table", config_command("data = 3\n"), ("[data]", "expected a table")),
    Case("config-epochs-negative", config_command("[baseline]\nepochs = -1\n"), ("[baseline].epochs = -1", ">= 0")),
    Case("config-seed-negative", config_command("[explain]\nseed = -1\n"), ("[explain].seed = -1", "must be in 0..2**32-1")),
    Case("config-severity-twice", config_command("[benchmark]\ncorruption_severities = [2, 2]\n"), ("corruption_severities", "lists 2 twice")),
    Case("config-opset-too-new", config_command("[export]\nonnx_opset = 99\n"), ("[export].onnx_opset = 99", "exports ONNX up to opset")),
    Case("config-batch-size-zero", config_command("[baseline]\nbatch_size = 0\n"), ("[baseline].batch_size = 0", ">= 1")),
    Case("config-bench-batch-sizes-zero", config_command("[benchmark]\nbatch_sizes = [1, 0]\n"), ("batch_sizes", ">= 1")),
    Case("config-threads-zero", config_command("[benchmark]\nthreads = [0]\n"), ("[benchmark].threads", ">= 1")),
    Case("config-threads-absurd", config_command("[benchmark]\nthreads = [1, 100000]\n"), ("[benchmark].threads", "at most 256")),
    Case("config-train-threads-absurd", config_command("[baseline]\nthreads = 100000\n"), ("[baseline].threads", "must be in 0..256")),
    Case("config-student-width-absurd", config_command(variant('"distill(width=1000)"')), ("width=1000", "must be in [0, 4]")),
    Case("config-unknown-precision", config_command('[export]\ntflite_precisions = ["int4"]\n'), ("tflite_precisions", "'int4'", "expected any of")),
    Case("config-unknown-format", config_command('[export]\nformats = ["onx"]\n'), ("[export].formats", "'onx'", "did you mean 'onnx'")),
    Case("config-no-format", config_command('[export]\nformats = []\n'), ("[export].formats", "must name at least one of")),
    Case("config-no-tflite-precision", config_command('[export]\ntflite_precisions = []\n'), ("[export].tflite_precisions", "must name at least one of")),
    Case("config-unknown-runtime", config_command('[benchmark]\nruntimes = ["onnxruntim"]\n'), ("unknown runtime 'onnxruntim'", "did you mean 'onnxruntime'")),
    Case("config-unknown-model", config_command('[baseline]\nmodel = "tinycn"\n'), ("[baseline].model", "unknown model", "did you mean 'tinycnn'")),
    Case("config-unknown-pass", config_command(variant('"prune.unstructred()"')), ("unknown pass 'prune.unstructred'", "did you mean 'prune.unstructured'")),
    Case("config-sparsity-out-of-range", config_command(variant('"prune.unstructured(sparsity=1.5)"')), ("sparsity=1.5", "[0, 1)")),
    Case("config-ratio-out-of-range", config_command(variant('"prune.structured(ratio=1.0)"')), ("ratio=1.0", "[0, 1)")),
    Case("config-pass-bad-param", config_command(variant('"finetune(epoch=1)"')), ("finetune has no parameter 'epoch'",)),
    Case("config-variant-name-too-long", config_command(f'[[variants]]\nname = "{"v" * 300}"\npasses = ["finetune()"]\n'), ("300 characters", "at most 100")),
    Case("config-duplicate-variant", config_command(variant('"finetune()"') + variant('"finetune()"')), ("duplicate variant name",)),
    Case("config-unknown-masker", config_command('[explain]\nmasker = "blurr(10,10)"\n'), ("[explain].masker", "'blurr(10,10)'", "expected 'blur(kx,ky)'")),
    Case("config-unknown-dataset", config_command('[data]\ndataset = "mnist"\n'), ("[data].dataset = 'mnist'", "expected 'fashion-mnist' or 'imagefolder'")),
    Case("config-imagefolder-without-folder", config_command('[data]\ndataset = "imagefolder"\n'), ("[data].data_dir", "required when dataset = 'imagefolder'")),
    Case("config-empty-cache-dir", config_command('[output]\ncache_dir = ""\n'), ("[output].cache_dir", "must name a folder")),
    Case("cache-dir-is-a-file", lambda tmp: ["run", "--config", str(toml(tmp, GOOD_CONFIG + f'[output]\ncache_dir = "{write_file(tmp / "f", b"x")}/c"\n')),
                                             "--data-dir", str(fake_data(tmp / "data"))], ("[output].cache_dir", "exists but is not a folder")),
    Case("config-label-smoothing-one", config_command("[baseline]\nlabel_smoothing = 1.0\n"), ("label_smoothing", "[0, 1)")),
    Case("config-variant-name-not-ascii", config_command('[[variants]]\nname = "café"\npasses = ["finetune()"]\n'), ("'café'", "ASCII letters")),
    Case("config-cache-dir-nul", config_command('[output]\ncache_dir = "a\\u0000b"\n'), ("[output].cache_dir", "NUL character")),
    Case("config-out-dir-nul", config_command('[output]\ndir = "a\\u0000b"\n'), ("[output].dir", "NUL character")),
    Case("config-explain-timeout-absurd", config_command("[explain]\njob_timeout_s = 1e300\n"), ("job_timeout_s", "must be in (0, 604800]")),
    Case("config-integer-too-long", config_command("[baseline]\nlr = " + "9" * 5000 + "\n"), ("not valid TOML", "digits")),
    Case("config-pass-too-long", config_command(variant('"finetune(epochs=' + "-" * 2000 + '1)"')), ("pass 1", "2018 characters", "at most 1000")),
    Case("config-pass-nested-too-deep", config_command(variant('"finetune(epochs=' + "(" * 300 + "1" + ")" * 300 + ')"')), ("finetune",)),
    Case("config-latency-batch-absurd", config_command("[benchmark]\nbatch_sizes = [1000000000]\n"), ("batch_sizes", "at most 4096")),
    Case("config-throughput-batch-absurd", config_command("[benchmark]\nthroughput_batch = 1000000000\n"), ("throughput_batch", "1..4096")),
    Case("config-blur-kernel-absurd", config_command('[explain]\nmasker = "blur(99999999999999999999,1)"\n'), ("[explain].masker", "1..1024")),
    # --data-dir
    Case("data-dir-missing", run_command("--data-dir", "{tmp}/nope"), ("data directory not found", "nope")),
    Case("data-dir-is-a-file", lambda tmp: run_command("--data-dir", str(write_file(tmp / "idx.txt", b"x")))(tmp), ("idx.txt is a file",)),
    Case("data-dir-empty", lambda tmp: run_command("--data-dir", str(mkdir_p(tmp / "empty")))(tmp), ("holds no Fashion-MNIST IDX files",)),
    Case("data-missing-one-file", data_command(drop="t10k-labels-idx1-ubyte.gz"), ("lacks", "t10k-labels-idx1-ubyte")),
    Case("data-truncated-idx", data_command(truncate="train-images-idx3-ubyte"), ("train-images-idx3-ubyte", "truncated")),
    Case("data-truncated-gzip", data_command(truncate="t10k-images-idx3-ubyte.gz"), ("cannot read IDX file", "t10k-images-idx3-ubyte.gz")),
    Case("data-not-idx", data_command(garbage="train-labels-idx1-ubyte"), ("train-labels-idx1-ubyte", "not an IDX file")),
    Case("data-mismatched-idx", data_command(n_train_labels=150), ("mismatched", "200 images but 150 labels")),
    Case("data-no-test-images", data_command(n_test=0), ("the test IDX files hold no images",)),
    Case("data-labels-out-of-range", data_command(max_label=20), ("labels outside 0..9",)),
    Case("data-blank-training-images", data_command(blank_train=True), ("training images", "pixel std 0.0", "cannot be normalised")),
    Case("data-float-images", data_command(replace=("train-images-idx3-ubyte", idx_bytes(0x0D, (200, 28, 28)))),
         ("train images are float32", "unsigned bytes")),
    Case("data-float-labels", data_command(replace=("t10k-labels-idx1-ubyte", idx_bytes(0x0D, (50,), np.full(50, np.nan, ">f4").tobytes()))),
         ("test labels are float32", "integer class indices")),
    Case("data-images-without-pixels", data_command(replace=("t10k-images-idx3-ubyte", idx_bytes(0x08, (50, 0, 0)))), ("test images have no pixels",)),
    Case("data-test-images-other-size", data_command(replace=("t10k-images-idx3-ubyte", idx_bytes(0x08, (50, 32, 32)))),
         ("training images are 28x28 but test images 32x32",)),
    Case("data-shape-overflows", data_command(replace=("t10k-images-idx3-ubyte", idx_bytes(0x08, (2**22, 2**21, 2**21), b"x"))),
         ("t10k-images-idx3-ubyte", "truncated or padded")),
    Case("data-val-size-too-big", lambda tmp: ["run", "--config", str(toml(tmp, GOOD_CONFIG.replace("val_size = 50", "val_size = 500"))),
                                                "--data-dir", str(fake_data(tmp / "data"))], ("val_size = 500", "leaves no training images")),
    # --checkpoint (checked before the run folder is created)
    Case("checkpoint-missing", ckpt_command("missing"), ("checkpoint not found", "w.pt")),
    Case("checkpoint-is-a-folder", lambda tmp: ["run", "--config", str(toml(tmp, GOOD_CONFIG)), "--data-dir", str(fake_data(tmp / "data")),
                                                "--checkpoint", str(mkdir_p(tmp / "weights"))], ("checkpoint", "weights is a folder")),
    Case("checkpoint-not-a-regular-file", lambda tmp: ["run", "--config", str(toml(tmp, GOOD_CONFIG)), "--data-dir", str(fake_data(tmp / "data")),
                                                       "--checkpoint", "/dev/null"], ("/dev/null is not a regular file",)),
    Case("checkpoint-truncated", ckpt_command("truncated"), ("corrupt or truncated", "w.pt")),
    Case("checkpoint-not-state-dict", ckpt_command("list"), ("expected a state_dict", "list")),
    Case("checkpoint-text-file", ckpt_command("text"), ("w.pt", "not a PyTorch weight file")),
    Case("checkpoint-wrong-shapes", ckpt_command("wrong-shapes"), ("has shape", "the model expects")),
    Case("checkpoint-nan-weights", ckpt_command("nan"), ("w.pt", "features.0.0.weight holds NaN or inf values")),
    Case("checkpoint-complex-weights", ckpt_command("complex"), ("w.pt", "features.0.0.weight holds complex64 values", "expects float32")),
    Case("checkpoint-negative-variance", ckpt_command("negative-variance"), ("w.pt", "features.0.1.running_var holds negative variances")),
    Case("checkpoint-pickle-with-code", ckpt_command("evil"), ("refused", "never unpickles code"), after=_no_marker),
    Case("checkpoint-raw-pickle-with-code", ckpt_command("evil-raw"), ("w.pt",), after=_no_marker),
    Case("model-factory-not-importable", lambda tmp: ["run", "--config", str(toml(tmp, GOOD_CONFIG.replace('"tinycnn"', '"no_such_mod_xyz:build"'))),
                                                      "--data-dir", str(fake_data(tmp / "data"))], ("no_such_mod_xyz", "cannot import")),
    Case("model-factory-raises", model_command("factory_that_raises"), ("factory_that_raises", "failed", "RuntimeError", "needs 3 input channels")),
    Case("model-wrong-input-size", model_command("model_for_other_images"), ("does not run on this dataset's 1x28x28 images", "RuntimeError")),
    Case("model-factory-not-callable", model_command("NOT_A_FACTORY"), ("has no callable 'NOT_A_FACTORY'",)),
    Case("model-factory-returns-no-module", model_command("factory_returning_a_dict"), ("returned dict", "expected a torch.nn.Module")),
    Case("model-relative-module", model_spec_command(".bad_input_models:factory_that_raises"), ("'.bad_input_models' is not a module name",)),
    Case("model-factory-exits", model_command("factory_that_exits"), ("factory_that_exits", "failed", "SystemExit: 0")),
    Case("student-factory-raises", lambda tmp: ["run", "--config", str(toml(tmp, GOOD_CONFIG + variant(
        "\"distill(width=0.5, student='tests.bad_input_models:factory_that_raises')\""))), "--data-dir", str(fake_data(tmp / "data"))],
        ("[[variants]] 'v' distill(student='tests.bad_input_models:factory_that_raises')", "failed", "needs 3 input channels")),
    Case("model-integer-logits", model_command("model_with_integer_logits"), ("returns int64 logits", "floating-point class scores")),
    Case("model-wrong-class-count", model_command("model_with_seven_outputs"), ("returns (2, 7)", "expected logits of shape (2, 10)")),
    # artifacts (`edgebench inspect`)
    Case("inspect-missing-file", lambda tmp: ["inspect", str(tmp / "nope.onnx")], ("model file not found", "nope.onnx")),
    Case("inspect-unknown-suffix", lambda tmp: ["inspect", str(write_file(tmp / "m.bin", b"x"))], ("unknown artifact type '.bin'",)),
    Case("onnx-garbage", lambda tmp: ["inspect", str(write_file(tmp / "m.onnx", b"not an onnx model" * 20))], ("m.onnx", "not a valid ONNX model")),
    Case("onnx-truncated", lambda tmp: ["inspect", str(external_onnx(tmp / "model", truncate=True))], ("m.onnx", "corrupt or truncated")),
    Case("onnx-name-not-utf8", lambda tmp: ["inspect", str(onnx_with_a_name_that_is_not_utf8(tmp / "m.onnx"))],
         ("m.onnx", "not UTF-8 text")),
    Case("onnx-undefined-input", lambda tmp: ["inspect", str(onnx_reading_an_undefined_tensor(tmp / "m.onnx"))],
         ("ONNX checker rejected the model", "input 'nonexistent' of node: name: OpType: Relu is not output of any previous nodes.")),
    # onnx.load alone would parse a .json or .textproto as text and raise an unexpected ParseError
    Case("onnx-json-named-file", lambda tmp: ["inspect", str(write_file(tmp / "m.json", b'{"a": 1}')), "--format", "onnx"],
         ("m.json", "not a valid ONNX model")),
    Case("onnx-empty-file", lambda tmp: ["inspect", str(write_file(tmp / "m.onnx", b""))], ("m.onnx", "not a valid ONNX model")),
    Case("onnx-external-escape", lambda tmp: ["inspect", str(external_onnx(tmp / "model", location="../secret.bin"))], ("'../secret.bin'", "outside the model's folder")),
    Case("onnx-external-absolute", lambda tmp: ["inspect", str(external_onnx(tmp / "model", location="/etc/passwd"))], ("'/etc/passwd'", "absolute path")),
    Case("onnx-external-symlink-escape", lambda tmp: ["inspect", str(external_onnx(tmp / "model", symlink=True))], ("outside the model's folder",)),
    Case("onnx-external-missing", lambda tmp: ["inspect", str(external_onnx(tmp / "model", location="gone.bin"))], ("gone.bin", "does not exist")),
    Case("onnx-external-truncated", lambda tmp: ["inspect", str(external_onnx(tmp / "model", data_bytes=16))], ("weights.bin", "truncated external data")),
    Case("tflite-too-short", lambda tmp: ["inspect", str(write_file(tmp / "m.tflite", b"\x10\0\0\0TF"))], ("m.tflite", "too short")),
    Case("tflite-wrong-identifier", lambda tmp: ["inspect", str(write_file(tmp / "m.tflite", b"\x10\0\0\0ONNX" + bytes(64)))], ("not a TFLite model", "TFL3")),
    Case("tflite-root-past-end", lambda tmp: ["inspect", str(write_file(tmp / "m.tflite", b"\xff\xff\0\0TFL3" + bytes(64)))], ("truncated or corrupt",)),
    Case("tflite-truncated", lambda tmp: ["inspect", str(bad_tflite(tmp, "truncated"))], ("m.tflite", "corrupt or truncated")),
    Case("tflite-bad-tensor-index", lambda tmp: ["inspect", str(bad_tflite(tmp, "bad-index"))], ("refers to tensor 7",)),
    Case("pt2-not-zip", lambda tmp: ["inspect", str(write_file(tmp / "m.pt2", b"PK\x03\x04 truncated zip"))], ("m.pt2", "not a valid .pt2 archive")),
    Case("pt2-zip-without-program", lambda tmp: ["inspect", str(zip_without_program(tmp / "m.pt2"))], ("without a serialized program",)),
    Case("pt2-weight-cut-short", lambda tmp: ["inspect", str(damaged_pt2(tmp / "m.pt2", "short-weight"))],
         ("m.pt2", "weights of 'features.0.0.weight' are cut short (100 bytes")),
    Case("pt2-without-weights-table", lambda tmp: ["inspect", str(damaged_pt2(tmp / "m.pt2", "no-weights-table"))],
         ("m.pt2", "without its weights table")),
    # results.json read by report / compare (hand-edited or foreign files)
    Case("report-malformed-row", lambda tmp: ["report", str(results_json(tmp, minimal_document([{**_ROW, "latency": "fast"}])))],
         ("results.json does not meet the results schema", "rows/0/latency", "'fast'")),
    Case("compare-row-without-variant", lambda tmp: ["compare", *[str(results_json(tmp, minimal_document([{}])))] * 2],
         ("results.json does not meet the results schema", "rows/0", "'variant' is a required property")),
    Case("report-top-level-schema-error", lambda tmp: ["report", str(results_json(tmp, {"rows": []}))],
         ("does not meet the results schema: top level: 'schema_version' is a required property",)),
    Case("compare-too-few-resamples", lambda tmp: ["compare", *[str(results_json(tmp, minimal_document([_ROW])))] * 2, "--resamples", "10"],
         ("--resamples 10 is too few",)),
    Case("compare-too-many-resamples", lambda tmp: ["compare", *[str(results_json(tmp, minimal_document([_ROW])))] * 2, "--resamples", str(10**12)],
         ("is more than a 95% interval needs",)),
    Case("compare-deeply-nested-json", lambda tmp: ["compare", *[str(results_json(tmp, '{"rows": ' + "[" * 100_000 + "]" * 100_000 + "}"))] * 2],
         ("cannot be read as JSON", "recursion")),
    Case("report-newer-schema", lambda tmp: ["report", str(results_json(tmp, minimal_document([_ROW], schema_version=999)))],
         ("schema version 999, newer than this edgebench reads (1)",)),
    Case("compare-negative-seed", lambda tmp: ["compare", *[str(results_json(tmp, minimal_document([_ROW])))] * 2, "--seed", "-1"],
         ("--seed must be >= 0, got -1",)),
    Case("report-throughput-not-an-object", lambda tmp: ["report", str(results_json(tmp, minimal_document([{**_ROW, "throughput": "fast"}])))],
         ("rows/0/throughput", "'fast'")),
    Case("report-baseline-info-not-an-object", lambda tmp: ["report", str(results_json(tmp, minimal_document([_ROW], baseline_info="x")))],
         ("baseline_info", "'x'")),
    Case("compare-config-section-not-an-object", lambda tmp: ["compare", *[str(results_json(tmp, minimal_document([_ROW], config={"benchmark": "x"})))] * 2],
         ("config/benchmark", "'x'")),
    Case("compare-nan-p50", lambda tmp: ["compare", *[str(results_json(tmp, minimal_document([_NAN_P50])))] * 2, "--fail-on", "p50:+10%"],
         ("rows/0/latency/0/p50: NaN is not a number > 0",)),
    Case("compare-infinite-p50", lambda tmp: ["compare", *[str(results_json(tmp, minimal_document([_INF_P50])))] * 2],
         ("rows/0/latency/0/p50", "inf")),
    Case("compare-negative-size", lambda tmp: ["compare", *[str(results_json(tmp, minimal_document([{**_ROW, "size_bytes": -5}])))] * 2],
         ("rows/0/size_bytes", "-5")),
    Case("report-row-twice", lambda tmp: ["report", str(results_json(tmp, minimal_document([_ROW, _ROW])))], ("lists row", "twice")),
    Case("compare-nan-top1", lambda tmp: ["compare", *[str(results_json(tmp, minimal_document([_NAN_TOP1])))] * 2],
         ("rows/0/accuracy/top1: NaN is not a number >= 0",)),
    Case("report-results-json-is-a-folder", lambda tmp: ["report", str(mkdir_p(tmp / "run" / "results.json").parent)],
         ("results.json is a folder, not a file",)),
    Case("compare-results-json-path", lambda tmp: ["compare", *[str(results_json(tmp, minimal_document([_ROW])) / "results.json")] * 2],
         ("results.json is a file; pass the run folder that holds it",)),
    # --resume
    Case("resume-not-a-run", lambda tmp: ["run", "--resume", str(mkdir_p(tmp / "run"))], ("not an edgebench run folder",)),
    Case("resume-with-out", lambda tmp: ["run", "--resume", str(results_json(tmp, {"status": "running"})), "--out", "x"], ("drop --out",)),
    Case("resume-quick-of-a-full-run", lambda tmp: ["run", "--resume", str(results_json(tmp, {"status": "running", "config": {}})), "--quick"],
         ("was not a --quick run", "drop --quick")),
    Case("resume-with-config", lambda tmp: ["run", "--resume", str(results_json(tmp, {"status": "running"})), "--config", "x.toml"], ("drop --config",)),
    Case("resume-complete", lambda tmp: ["run", "--resume", str(results_json(tmp, {"status": "complete", "config": {}}))], ("already complete",)),
    Case("resume-corrupt-json", lambda tmp: ["run", "--resume", str(results_json(tmp, "{\"rows\": ["))], ("results.json", "cannot be read")),
    Case("resume-bad-config", lambda tmp: ["run", "--resume", str(results_json(tmp, {"status": "running", "config": {"baseline": {"epochs": -1}}}))],
         ("results.json config [baseline].epochs = -1", ">= 0")),
    Case("resume-damaged-row", lambda tmp: ["run", "--resume", str(results_json(tmp, {"status": "running", "config": {}, "rows": [{"variant": 5}]}))],
         ("cannot be resumed", "rows/0")),
    Case("resume-run-options-not-an-object", lambda tmp: ["run", "--resume", str(results_json(tmp, {"status": "running", "config": {}, "run_options": "x"}))],
         ("cannot be resumed", "run_options", "'x'")),
    Case("resume-variants-done-not-a-list", lambda tmp: ["run", "--resume", str(results_json(tmp, {"status": "running", "config": {}, "variants_done": "x"}))],
         ("cannot be resumed", "variants_done")),
    Case("resume-row-twice", lambda tmp: ["run", "--resume", str(results_json(tmp, {"status": "running", "config": {}, "rows": [_ROW, _ROW]}))],
         ("cannot be resumed", "twice")),
    Case("resume-results-without-config", lambda tmp: ["run", "--resume", str(results_json(tmp, {"status": "running"}))],
         ("results.json", "config")),
    Case("out-is-a-file", lambda tmp: ["run", "--config", str(toml(tmp, GOOD_CONFIG)), "--data-dir", str(fake_data(tmp / "data")),
                                      "--out", str(write_file(tmp / "results", b"a file"))], ("results", "cannot create")),
]


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in root.rglob("*")}


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tmp_path as the working directory (default relative paths land here)."""
    monkeypatch.chdir(tmp_path)
    logger = logging.getLogger("edgebench")
    before = list(logger.handlers)
    yield tmp_path
    # a run that stopped on bad input must not leave its run.log attached: later runs would write there
    assert logger.handlers == before, "run() left a log handler behind"


def _check(case: Case, tmp: Path, code: int, err: str, before: dict[str, tuple[int, int]]) -> None:
    lines = err.strip().splitlines()
    assert code == 2, f"exit code {code}, stderr: {err[-800:]}"
    assert len(lines) == 1 and lines[0].startswith("edgebench: error:"), f"not one error line:\n{err[-1500:]}"
    for word in case.words:
        assert word.lower() in lines[0].lower(), f"{word!r} missing from: {lines[0]}"
    if case.after:
        case.after(tmp)
    changed = sorted(set(_snapshot(tmp).items()) ^ set(before.items()))
    assert not changed, f"a rejected command wrote files: {[c[0] for c in changed][:5]}"


def _out_args(argv: list[str], tmp: Path) -> list[str]:
    return argv + ["--out", str(tmp / "results")] if argv[0] == "run" and "--resume" not in argv and "--out" not in argv else argv


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input_is_one_clean_line(case: Case, workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = _out_args(case.setup(workdir), workdir)
    before = _snapshot(workdir)
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # what a user's terminal would show
        code = main(argv)
    shown = [f"{w.category.__name__}: {w.message}" for w in caught
             if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning, ImportWarning))]
    assert not shown, f"a warning would add lines to stderr: {shown[0][:300]}"
    _check(case, workdir, code, capsys.readouterr().err, before)


@pytest.mark.parametrize("case_id", ["config-missing", "config-invalid-toml", "onnx-external-escape", "checkpoint-pickle-with-code"])
def test_bad_input_in_a_real_process(case_id: str, workdir: Path) -> None:
    """The installed entry point behaves the same: exit status 2 and one line, no traceback."""
    case = next(c for c in CASES if c.id == case_id)
    argv = _out_args(case.setup(workdir), workdir)
    before = _snapshot(workdir)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-m", "bench", *argv], capture_output=True, text=True, env=env, timeout=300)
    assert "Traceback" not in proc.stderr
    _check(case, workdir, proc.returncode, proc.stderr, before)


def test_debug_shows_the_traceback(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--debug", "run", "--config", str(workdir / "nope.toml")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("edgebench: error: config file not found")


def test_a_run_that_stops_on_an_error_says_so_in_its_folder(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An error after the run folder exists (here a KD student as large as its teacher) still ends in one
    line, and results.json says the run failed and why, instead of staying 'running'."""
    import json

    text = GOOD_CONFIG.replace('"tinycnn"', '"tests.bad_input_models:ignores_width"') + variant('"distill(width=0.5, epochs=1)"')
    argv = ["run", "--config", str(toml(workdir, text)), "--data-dir", str(fake_data(workdir / "data")), "--out", str(workdir / "results"), "--quiet"]
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "not fewer than the teacher's" in lines[0]
    (document,) = [json.loads(p.read_text()) for p in (workdir / "results").glob("*/results.json")]
    assert document["status"] == "failed" and "ConfigError" in document["error"] and "not fewer than" in document["error"]


def test_case_ids_are_unique() -> None:
    """pytest would number a repeated id and run both, so an edited copy could hide its original."""
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a CUDA machine runs the CUDA cells")
def test_cuda_requested_where_no_runtime_can_use_it(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """device = 'cuda' on a CPU-only machine: every row would be skipped; one line and exit 2 instead."""
    text = GOOD_CONFIG.replace("[benchmark]\n", "[benchmark]\ndevice = \"cuda\"\n")
    argv = ["run", "--config", str(toml(workdir, text)), "--data-dir", str(fake_data(workdir / "data")), "--out", str(workdir / "results")]
    before = _snapshot(workdir)
    code = main(argv)
    _check(Case("cuda", lambda tmp: [], ("device = 'cuda'", "torch: no CUDA device", "'auto'")), workdir, code,
           capsys.readouterr().err, before)
