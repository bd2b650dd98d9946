"""The machine a run measured: CPU and ISA flags, GPU, package versions, git commit."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

# ISA features that change CPU inference results (int8 dot products, bf16/fp16 and wide vectors).
RELEVANT_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni",
                  "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16", "asimd", "asimddp", "sve", "i8mm")
# int8 dot products: VNNI / AMX on x86, dotprod / i8mm on Arm
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")
PACKAGES = ("torch", "torchvision", "numpy", "onnx", "onnxruntime", "onnxruntime-gpu", "onnxscript", "torch-pruning",
            "tensorflow", "tf_keras", "onnx2tf", "ai-edge-litert", "shap", "opencv-python-headless", "edgebench")


def cpu_info() -> dict[str, Any]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "Model") and model in ("", platform.machine(), platform.processor()):
                model = value.strip()
            elif key in ("flags", "Features"):
                flags |= set(value.split())
    except OSError:
        pass
    return {"model": model, "logical_cores": os.cpu_count() or 1,
            "flags": [f for f in RELEVANT_FLAGS if f in flags],
            "int8_dot_product": any(f in flags for f in INT8_DOT_FLAGS)}


def int8_dot_product(cpu: dict[str, Any]) -> bool | None:
    """Whether a recorded CPU has int8 dot-product instructions: its `int8_dot_product`, else worked
    out from its recorded flags (older or hand-written files); None when neither says."""
    if isinstance(cpu.get("int8_dot_product"), bool):
        return cpu["int8_dot_product"]
    flags = cpu.get("flags")
    return any(f in flags for f in INT8_DOT_FLAGS) if isinstance(flags, list) and flags else None


def gpu_info() -> dict[str, Any] | None:
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    return {"name": torch.cuda.get_device_name(0), "count": torch.cuda.device_count(), "cuda": torch.version.cuda}


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_info(repo: Path | None = None) -> dict[str, Any] | None:
    repo = repo or Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo, capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(dirty)}


def environment() -> dict[str, Any]:
    from bench.runtimes import RUNTIMES

    return {"python": sys.version.split()[0], "platform": platform.platform(), "cpu": cpu_info(),
            "gpu": gpu_info(), "packages": package_versions(), "git": git_info(),
            "runtime_calls": {name: spec.call for name, spec in RUNTIMES.items()}}


def environment_differences(doc_a: dict[str, Any], doc_b: dict[str, Any]) -> list[str]:
    """Differences between two runs' machines and set-ups (results.json documents) that can explain a
    change of their numbers on their own; `edgebench compare` prints them as notes."""
    notes = []
    env_a, env_b = doc_a.get("environment") or {}, doc_b.get("environment") or {}
    cpu_a, cpu_b = env_a.get("cpu") or {}, env_b.get("cpu") or {}
    for label, va, vb in (("CPU", cpu_a.get("model"), cpu_b.get("model")),
                          ("logical cores", cpu_a.get("logical_cores"), cpu_b.get("logical_cores")),
                          ("--quick", bool(doc_a.get("quick")), bool(doc_b.get("quick"))),
                          ("git commit", (env_a.get("git") or {}).get("commit"), (env_b.get("git") or {}).get("commit"))):
        if va != vb:
            notes.append(f"{label} differs: A {va}, B {vb}")
    flags_a, flags_b = set(cpu_a.get("flags") or []), set(cpu_b.get("flags") or [])
    if flags_a != flags_b:
        notes.append(f"CPU instruction sets differ: only A {sorted(flags_a - flags_b) or '-'}, only B {sorted(flags_b - flags_a) or '-'}")
    dot_a, dot_b = int8_dot_product(cpu_a), int8_dot_product(cpu_b)  # also for files that lack the field
    if dot_a is not None and dot_b is not None and dot_a != dot_b:
        notes.append(f"int8 dot-product instructions (VNNI/dotprod) differ: A {dot_a}, B {dot_b}: int8 speed-ups are not comparable")
    notes += _data_and_baseline_differences(doc_a, doc_b)
    bench_a, bench_b = ((doc.get("config") or {}).get("benchmark") or {} for doc in (doc_a, doc_b))
    timing = _changed_keys(bench_a, bench_b)
    if timing:
        notes.append("benchmark settings differ: " + ", ".join(f"{k} {bench_a.get(k)} -> {bench_b.get(k)}" for k in timing))
    settings = _config_differences((doc_a.get("config") or {}), (doc_b.get("config") or {}))
    if settings:
        shown = ", ".join(settings[:8]) + (f" and {len(settings) - 8} more" if len(settings) > 8 else "")
        notes.append(f"config differs (weights, data or explanations may differ with it): {shown}")
    pkg_a, pkg_b = env_a.get("packages") or {}, env_b.get("packages") or {}
    changed = [f"{n} {pkg_a.get(n, '-')} -> {pkg_b.get(n, '-')}" for n in sorted(set(pkg_a) | set(pkg_b)) if pkg_a.get(n) != pkg_b.get(n)]
    if changed:
        notes.append("package versions differ: " + ", ".join(changed))
    calls_a, calls_b = env_a.get("runtime_calls") or {}, env_b.get("runtime_calls") or {}
    for name in sorted(set(calls_a) | set(calls_b)):  # e.g. ORT timed through session.run vs an IOBinding: ~7 us a call
        if calls_a.get(name) != calls_b.get(name):
            notes.append(f"{name} is called differently: A {calls_a.get(name) or 'not recorded'}, B {calls_b.get(name) or 'not recorded'}")
    return notes


def _data_and_baseline_differences(doc_a: dict[str, Any], doc_b: dict[str, Any]) -> list[str]:
    """Notes when the runs measured other images, trained on other images, or started from other
    baseline weights (a --checkpoint or --data-dir is not part of the config, so the config
    differences cannot show it)."""
    notes = []
    data_a, data_b = doc_a.get("dataset") or {}, doc_b.get("dataset") or {}
    for key in ("name", "test_size"):
        if data_a.get(key) != data_b.get(key):
            notes.append(f"dataset {key} differs: A {data_a.get(key)}, B {data_b.get(key)}: accuracy is not measured on the same images")
    digests_a, digests_b = data_a.get("digests") or {}, data_b.get("digests") or {}  # runs before digests have none
    if data_a.get("test_size") == data_b.get("test_size") and _differ(digests_a.get("test"), digests_b.get("test")):
        notes.append(f"the test images differ (A from {data_a.get('source')}, B from {data_b.get('source')}): "
                     "accuracy is not measured on the same images")
    if any(_differ(digests_a.get(split), digests_b.get(split)) for split in ("train", "val")):
        notes.append("the training or validation images differ: the runs trained on other data")
    base_a, base_b = doc_a.get("baseline_info") or {}, doc_b.get("baseline_info") or {}
    if _differ(base_a.get("cache_key"), base_b.get("cache_key")):
        notes.append(f"the baseline weights differ: A {_baseline_origin(base_a)}, B {_baseline_origin(base_b)}")
    return notes


def _differ(a: object, b: object) -> bool:
    """Both recorded and different (a value one run lacks proves nothing)."""
    return a is not None and b is not None and a != b


def _baseline_origin(info: dict[str, Any]) -> str:
    if info.get("source") == "checkpoint":
        return f"the checkpoint {info.get('checkpoint')} (sha256 {info.get('cache_key')})"
    return f"trained (cache key {info.get('cache_key')})"


# settings that say where things are or how fast they are computed, not what is measured
_WHERE_NOT_WHAT = {"data.data_dir", "data.download", "explain.workers"}


def _config_differences(config_a: dict[str, Any], config_b: dict[str, Any]) -> list[str]:
    """'section.key A -> B' for every setting that differs, but the benchmark's (noted on their own above)
    and where the output goes; variants by name ('variants: +added -removed', or their passes changed)."""
    out = []
    for section in sorted((set(config_a) | set(config_b)) - {"benchmark", "output", "variants"}):
        a, b = config_a.get(section) or {}, config_b.get(section) or {}
        out += [f"{section}.{k} {a.get(k, '-')} -> {b.get(k, '-')}" for k in _changed_keys(a, b) if f"{section}.{k}" not in _WHERE_NOT_WHAT]
    variants_a = {v.get("name"): v.get("passes") for v in config_a.get("variants") or [] if isinstance(v, dict)}
    variants_b = {v.get("name"): v.get("passes") for v in config_b.get("variants") or [] if isinstance(v, dict)}
    added, removed = sorted(set(variants_b) - set(variants_a), key=str), sorted(set(variants_a) - set(variants_b), key=str)
    if added or removed:
        out.append("variants " + " ".join([f"+{n}" for n in added] + [f"-{n}" for n in removed]))
    out += [f"variant {n} passes changed" for n in sorted(set(variants_a) & set(variants_b), key=str) if variants_a[n] != variants_b[n]]
    return out


# lists whose order changes nothing measured: bench.measure.latency_settings sorts them
_ORDER_FREE = {"threads", "batch_sizes"}


def _changed_keys(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return [k for k in sorted(set(a) | set(b)) if _comparable(k, a.get(k)) != _comparable(k, b.get(k))]


def _comparable(key: str, value: Any) -> Any:
    if key in _ORDER_FREE and isinstance(value, list) and all(isinstance(v, int) for v in value):
        return sorted(value)
    return value
