"""Shared pieces of the benchmark scripts: hardware description, tables, RESULTS.md."""

import datetime
import os
import platform
import shlex
import sys
import time

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")


def hardware_description():
    """CPU model and core count, plus GPUs if TensorFlow sees any."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        if names:
            cpu = names[0]
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} cores"
    try:
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = [tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus]
            text += f", GPUs: {', '.join(details)}"
        text += f"; TensorFlow {tf.__version__}"
    except Exception:
        pass
    return text


def _format(value):
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def markdown_table(rows, columns):
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_format(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def git_revision():
    """The commit the results were measured at, and whether the measured code differed from it.

    Only `vaezoo/` and `benchmarks/` count as measured code: edits elsewhere (tests, docs,
    cards) cannot change a benchmark's numbers.
    """
    import subprocess

    root = os.path.dirname(os.path.dirname(RESULTS))
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "vaezoo",
                                "benchmarks", ":!benchmarks/RESULTS.md"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"git {sha}" + (" + local changes to vaezoo/ or benchmarks/" if dirty else "")


_STARTED = time.monotonic()


def machine_load():
    """Wall and CPU time of this run so far, and the load average: what a reader needs to judge
    timings measured on a shared machine (written by the script, never by hand)."""
    cpu = sum(os.times()[:4])  # user + system, of this process and its finished children
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return (f"{time.monotonic() - _STARTED:.0f} s wall, {cpu:.0f} s CPU (this process and its children); "
            f"load average at the end (1, 5, 15 min) {load} on {os.cpu_count()} cores")


def append_results(title, table, protocol, hardware):
    """Append a dated section with the exact command to benchmarks/RESULTS.md."""
    command = " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0])] + sys.argv[1:])
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = (f"\n## {title}\n\n- command: `python {command}`\n- date: {when}\n- code: {git_revision()}\n"
               f"- hardware: {hardware}\n- run: {machine_load()}\n- protocol: {protocol}\n\n{table}\n")
    new = not os.path.exists(RESULTS)
    with open(RESULTS, "a", encoding="utf-8") as f:
        if new:
            f.write("# Benchmark results\n\nEvery section is appended by a script in `benchmarks/`; "
                    "rerun the command to reproduce it. Ratios compare peers measured in the same run.\n")
        f.write(section)
    print(f"appended to {RESULTS}")


def load_rq_model(ref):
    """`(model, eval data spec)` of an RQ-VAE MODEL argument (zoo name, workdir, ...); exits with
    a clear message for any other family."""
    from vaezoo.registry import resolve_model

    resolved = resolve_model(ref)
    if resolved.model.latent_kind != "residual_code_grid":
        raise SystemExit(f"{ref} is not an RQ-VAE (a model with code stacks); these studies need one.")
    return resolved.model, dict(resolved.data_spec)


def exact_bits_per_depth(model, stacks):
    """Mean exact bits per code at each depth of code stacks `(n, h, w, D)` under the model's
    context network (its LiteRT file: the same integers as the reference, faster)."""
    from vaezoo import integer_entropy
    from vaezoo.export.tflite import convert_context_network

    network = model.context_network()
    runtime = integer_entropy.LiteRTContextNetwork(convert_context_network(network), network)
    return integer_entropy.code_bits(runtime, stacks, per_depth=True).sum(axis=0) / (stacks.size / stacks.shape[-1])
