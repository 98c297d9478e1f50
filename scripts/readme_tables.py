"""Regenerate the README's tables and captions from where their numbers are recorded.

Each table sits between `<!-- NAME:start -->` and `<!-- NAME:end -->` markers in README.md:

- `zoo-table`: every card's family, size and measured metrics (cards are written by
  `vaezoo eval NAME --write-card`);
- `likelihood-table`: the IWAE figure and its standard error from the `vae-mnist` and
  `hvae-mnist` cards, beside the published figures quoted by `benchmarks/likelihood_table.py`;
- `throughput-table`: every recorded run of `benchmarks/peer_throughput.py` in
  `benchmarks/RESULTS.md`, summarised as the range over runs;
- `latency-table`: the last recorded run of `benchmarks/api_latency.py` in
  `benchmarks/RESULTS.md`, per method and batch size the range over the zoo models of the
  Python API's time over the SavedModel signature's, and of the eager (before) time over it;
- `rate-distortion`: the plots and vaezoo-against-classic tables of the last recorded run of
  `benchmarks/rate_distortion.py` in `benchmarks/RESULTS.md`;
- `demo-caption`: the caption of the demo picture, from docs/images/demo.json (written with
  the picture by `python scripts/readme_pictures.py demo`).

Nothing in these tables is typed by hand; `tests/test_docs.py` fails when README.md and this
script disagree.

    python scripts/readme_tables.py
"""

import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
README = os.path.join(ROOT, "README.md")
RESULTS = os.path.join(ROOT, "benchmarks", "RESULTS.md")
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))


def _format(value):
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def zoo_table():
    from vaezoo import registry

    rows = ["| name | family | parameters | data | weights | measured (split, protocol in the card) |",
            "|---|---|---|---|---|---|"]
    for name in registry.list_models():
        card = registry.info(name)
        params = registry.build(name).count_params()
        data = card["data"].get("tfds") or card["data"]["source"]
        if "cifar10_jpeg" in str(card["data"].get("path", "")):
            data = "CIFAR-10 (JPEG q75 copy)"
        weights = f"{card['weights']['bytes'] / 1e6:.1f} MB" if card["weights"] else "recipe only"
        if "base" in (card["weights"] or {}):
            weights += f" (its {card['weights']['part']}; the rest is `{card['weights']['base']}`'s)"
        metrics = "; ".join(f"{k} {_format(v['value'])} ({v['split']})" for k, v in (card["metrics"] or {}).items()
                            if not isinstance(v["value"], list))
        rows.append(f"| `{name}` | {card['family']} | {params / 1e6:.2f} M | {data} | {weights} | {metrics or '-'} |")
    return "\n".join(rows)


ZOO_LIKELIHOOD_ROWS = {
    "vae-mnist": "vaezoo `vae-mnist` (conv VAE, 32 latents, 15k steps on 2 CPU cores)",
    "hvae-mnist": "vaezoo `hvae-mnist` (3-layer top-down hierarchical VAE, 30k steps on 2 CPU cores)",
}


def likelihood_table():
    from likelihood_table import PUBLISHED

    from vaezoo import registry

    rows = ["| model | NLL (nats) | protocol |", "|---|---|---|"]
    for name, label in ZOO_LIKELIHOOD_ROWS.items():
        metric = (registry.info(name)["metrics"] or {}).get("iwae")
        if metric is None:
            rows.append(f"| {label} | not measured | |")
            continue
        stderr = f" +- {metric['stderr']:.2f}" if "stderr" in metric else " (no standard error recorded)"
        rows.append(f"| {label} | {-metric['value']:.2f}{stderr} | card: `{metric['command']}` |")
    for row in PUBLISHED:
        rows.append(f"| {row['model']} | {row['nll']:.2f} | {row['protocol']} |")
    return "\n".join(rows)


PEER_TITLE = "Training throughput: vaezoo vs plain Keras fit, dm-sonnet, PyTorch and pythae"
PEER_COLUMNS = (("vaezoo", "vaezoo Trainer"), ("keras-fit", "plain Keras `fit` (GradientTape `train_step`)"),
                ("sonnet", "dm-sonnet `VectorQuantizerEMA`"), ("pytorch", "PyTorch"), ("pythae", "pythae"))
PEER_MODELS = (("vae-conv-28", "Gaussian conv VAE, 28x28x1"), ("vqvae-32", "VQ-VAE (Sonnet example), 32x32x3"))


def peer_runs(results_text):
    """One `{(model, peer): images/s}` per recorded peer-throughput section, XLA off (or n/a)."""
    runs = []
    for section in results_text.split("\n## ")[1:]:
        if not section.startswith(PEER_TITLE):
            continue
        lines = [line for line in section.splitlines() if line.startswith("|")]
        header = [c.strip() for c in lines[0].strip("|").split("|")]
        run = {}
        for line in lines[2:]:
            row = dict(zip(header, (c.strip() for c in line.strip("|").split("|"))))
            if row["xla"] in ("off", "n/a"):
                run[(row["model"], row["peer"])] = float(row["images/s"])
        runs.append(run)
    return runs


def _span(values, spec):
    low, high = format(min(values), spec), format(max(values), spec)
    return low if low == high else f"{low}-{high}"


def throughput_table(results_text=None):
    if results_text is None:
        with open(RESULTS, encoding="utf-8") as f:
            results_text = f.read()
    runs = peer_runs(results_text)
    header = "| model | " + " | ".join(label for _, label in PEER_COLUMNS) + " |"
    rows = [header, "|---|" + "---|" * len(PEER_COLUMNS)]
    for model, label in PEER_MODELS:
        cells = []
        for peer, _ in PEER_COLUMNS:
            ratios = []
            speeds = []
            for run in runs:
                if (model, peer) in run:
                    fastest = max(v for (m, _), v in run.items() if m == model)
                    ratios.append(run[(model, peer)] / fastest)
                    speeds.append(run[(model, peer)])
            if not ratios:
                cells.append("-")
                continue
            fastest_in = sum(r == 1.0 for r in ratios)
            cells.append(f"{_span(ratios, '.2f')} ({_span(speeds, '.0f')} images/s"
                         + (f"; fastest in {fastest_in} of {len(ratios)} runs" if fastest_in else "") + ")")
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def demo_caption():
    """The caption under the demo picture, from the run that made it (docs/images/demo.json,
    written by `python scripts/readme_pictures.py demo`)."""
    import json

    import yaml

    with open(os.path.join(ROOT, "docs", "images", "demo.json"), encoding="utf-8") as f:
        run = json.load(f)
    with open(os.path.join(ROOT, "vaezoo", "configs", "demo.yaml"), encoding="utf-8") as f:
        config = yaml.safe_load(f)  # the recipe the caption describes
    metrics, train = run["metrics"], config["train"]
    return (f"*Made by `{run['command']}` (the command above) on {run['date']} ({run['code']}), redone by "
            f"`python scripts/readme_pictures.py demo`: data: generated dSprites, {config['data']['subset']:,} random "
            f"images (seed {train['seed']}), training images shown; protocol: {metrics['steps']} Adam steps, batch "
            f"{train['batch_size']}, KL warm-up; hardware: "
            f"{run['hardware']}; it printed an ELBO of {metrics['elbo']:.1f} nats per image (KL "
            f"{metrics['kl']:.1f} nats) on {metrics['examples']} training images. Rows: inputs, reconstructions "
            "(posterior mean), samples from the prior.*")


TABLES = {"zoo-table": zoo_table, "likelihood-table": likelihood_table, "throughput-table": throughput_table,
          "demo-caption": demo_caption}


LATENCY_TITLE = "Python API latency beside the SavedModel and TFLite exports"


def latency_rows(results_text):
    """The rows (dicts of strings) of the last recorded api_latency section, and its summary lines."""
    sections = [s for s in results_text.split("\n## ")[1:] if s.startswith(LATENCY_TITLE)]
    if not sections:
        return [], []
    lines = sections[-1].splitlines()
    table = [line for line in lines if line.startswith("|")]
    header = [c.strip() for c in table[0].strip("|").split("|")]
    rows = [dict(zip(header, (c.strip() for c in line.strip("|").split("|")))) for line in table[2:]]
    return rows, [line for line in lines if line.startswith("- ") and "sample / reconstruct" in line]


def latency_table(results_text=None):
    if results_text is None:
        with open(RESULTS, encoding="utf-8") as f:
            results_text = f.read()
    rows, summary = latency_rows(results_text)
    with_xla = any("XLA / API" in row for row in rows)  # a run with --xla
    out = ["| method | batch | API / SavedModel (range over zoo models) | eager (before) / API |"
           + (" XLA cores / API |" if with_xla else "") + " models |",
           "|---|---|---|---|" + ("---|" if with_xla else "") + "---|"]
    methods = []
    for row in rows:
        if row["method"] not in methods:
            methods.append(row["method"])
    for method in methods:
        for batch in ("1", "64"):
            chosen = [r for r in rows if r["method"] == method and r["batch"] == batch]
            if not chosen:
                continue
            ratio = [float(r["API / SavedModel"]) for r in chosen if r.get("API / SavedModel")]
            eager = [float(r["eager / API"]) for r in chosen if r.get("eager / API")]
            if not ratio and not eager:  # e.g. the old full-grid sampler: in the summary lines
                continue
            cells = [_span(ratio, '.2f') + 'x' if ratio else '-', _span(eager, '.1f') + 'x' if eager else '-']
            if with_xla:
                xla = [r.get("XLA / API", "") for r in chosen]
                numbers = [float(v) for v in xla if v and v != "does not compile"]
                cells.append(_span(numbers, '.2f') + 'x' if numbers else
                             "does not compile" if "does not compile" in xla else "-")
            out.append(f"| {method} | {batch} | {' | '.join(cells)} | {len(chosen)} |")
    return "\n".join(out + [""] + summary) if rows else "(no recorded run of benchmarks/api_latency.py)"


TABLES["latency-table"] = latency_table


COMPRESSION_TITLE = "Compression: .vqz v3 (exact context model, LiteRT) vs PixelCNN v1, WebP and AVIF"


def last_section(title, results_text=None):
    """`(lines, facts)` of the last RESULTS.md section titled `title` (facts: its `- key: value`
    lines), or `(None, None)` when there is none."""
    if results_text is None:
        with open(RESULTS, encoding="utf-8") as f:
            results_text = f.read()
    sections = [s for s in results_text.split("\n## ")[1:] if s.startswith(title)]
    if not sections:
        return None, None
    lines = sections[-1].splitlines()
    facts = {line[2:].split(":", 1)[0]: line[2:].split(":", 1)[1].strip() for line in lines if line.startswith("- ")}
    return lines, facts


def compression_table(results_text=None):
    """The last recorded run of benchmarks/compression.py: its tables, date, code and hardware."""
    lines, facts = last_section(COMPRESSION_TITLE, results_text)
    if lines is None:
        return "(no recorded run of benchmarks/compression.py)"
    tables = "\n".join(line for line in lines if line.startswith("|") or not line.strip())
    caption = (f"*`{facts.get('command', '').strip('`')}` on {facts.get('date')} ({facts.get('code')}), "
               f"{facts.get('hardware')}; {facts.get('run')}. Protocol in benchmarks/RESULTS.md.*")
    return tables.strip() + "\n\n" + caption


TABLES["compression-table"] = compression_table


LARGE_IMAGES_TITLE = "Large images: 12 MP peak memory, whole vs tiled (Keras, LiteRT)"


def photo_table(results_text=None):
    """The LiteRT-only rows of the last recorded benchmarks/large_images.py run (a 12 MP photo)."""
    lines, facts = last_section(LARGE_IMAGES_TITLE, results_text)
    if lines is None:
        return "(no recorded run of benchmarks/large_images.py)"
    table = [line for line in lines if line.startswith("|")]
    header = [c.strip() for c in table[0].strip("|").split("|")]
    rows = [dict(zip(header, (c.strip() for c in line.strip("|").split("|")))) for line in table[2:]]
    chosen = [r for r in rows if r["path"] == "litert" and r["mode"] == "tiled"]
    out = ["| step (LiteRT only, tiled) | seconds | peak RSS MB | bytes | PSNR dB |", "|---|---|---|---|---|"]
    out += [f"| {r['step']} | {r['seconds']} | {r['peak RSS MB']} | {r['12 MP bytes'] or '-'} | "
            f"{r['12 MP PSNR dB'] or '-'} |" for r in chosen]
    caption = (f"*`{facts.get('command', '').strip('`')}` on {facts.get('date')} ({facts.get('code')}), "
               f"{facts.get('hardware')}: one 4000x3000 photo (scikit-image rocket(), upsampled), "
               "compressed and decompressed in fresh processes that never import TensorFlow.*")
    return "\n".join(out) + "\n\n" + caption


TABLES["photo-table"] = photo_table


RATE_DISTORTION_FIGURES = (("CIFAR-10 (JPEG q75 copy)", "docs/images/rate_distortion_cifar.png"),
                           ("scikit-image's sample photos", "docs/images/rate_distortion_photos.png"))


def rate_distortion_block(results_text=None):
    """The last recorded run of benchmarks/rate_distortion.py: its plots (written by the same run),
    vaezoo against each classic codec (at each quality and BD-rates), the goals, and a caption."""
    from rate_distortion import CIFAR_POINTS_TITLE, CIFAR_TITLE, PHOTOS_POINTS_TITLE, PHOTOS_TITLE

    lines, facts = last_section(CIFAR_TITLE, results_text)
    if lines is None:
        return "(no recorded run of benchmarks/rate_distortion.py)"
    out = []
    titles = ((CIFAR_POINTS_TITLE, CIFAR_TITLE), (PHOTOS_POINTS_TITLE, PHOTOS_TITLE))
    for (label, figure), (points_title, title) in zip(RATE_DISTORTION_FIGURES, titles):
        section, section_facts = last_section(title, results_text)
        points, points_facts = last_section(points_title, results_text)
        if section is None or section_facts.get("date") != facts.get("date"):
            continue  # photos not measured in that run
        if not os.path.isfile(os.path.join(ROOT, figure)):
            raise SystemExit(f"{figure} is missing: rerun benchmarks/rate_distortion.py")
        # vaezoo's own rows of the same run's every-point table (SSIM, times), then the comparisons
        table = [line for line in points or [] if line.startswith("|")]
        own = "\n".join(table[:2] + [line for line in table[2:] if line.startswith("| vaezoo")])
        if points_facts is None or points_facts.get("date") != facts.get("date"):
            own = ""
        body = "\n".join(line for line in section if line.startswith(("|", "- goal")) or not line.strip()).strip()
        out.append(f"**{label}**\n\n![rate-distortion curves, {label}]({figure})\n\n{own}\n\n{body}")
    caption = (f"*`{facts.get('command', '').strip('`')}` on {facts.get('date')} ({facts.get('code')}), "
               f"{facts.get('hardware')}; {facts.get('run')}. Protocol and every point in benchmarks/RESULTS.md.*")
    return "\n\n".join(out) + "\n\n" + caption


TABLES["rate-distortion"] = rate_distortion_block


FINETUNE_TITLE = "Fine-tuning vae-mnist on Fashion-MNIST vs training from scratch"


def finetune_rows(results_text=None):
    """`(rows, facts)` of the last run of benchmarks/finetune.py: each table row as a dict by
    column (the fine-tuning notebook quotes them; tests/test_notebooks.py checks the quotes)."""
    lines, facts = last_section(FINETUNE_TITLE, results_text)
    if lines is None:
        return None, None
    table = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines if line.startswith("|")]
    return [dict(zip(table[0], row)) for row in table[2:]], facts


def finetune_table(results_text=None):
    """The last recorded run of benchmarks/finetune.py: its table, conclusion and caption."""
    lines, facts = last_section(FINETUNE_TITLE, results_text)
    if lines is None:
        return "(no recorded run of benchmarks/finetune.py)"
    table = "\n".join(line for line in lines if line.startswith("|"))
    result = next(line for line in lines if line.startswith("Result:"))
    caption = (f"*`{facts.get('command', '').strip('`')}` on {facts.get('date')} ({facts.get('code')}), "
               f"{facts.get('hardware')}. Protocol in benchmarks/RESULTS.md.*")
    return f"{table}\n\n{result}\n\n{caption}"


TABLES["finetune-table"] = finetune_table


def _pattern(name):
    return f"<!-- {name}:start -->\n?(.*?)\n?<!-- {name}:end -->"


def block(text, name):
    """The text between a table's markers in `text` (None if the markers are missing)."""
    match = re.search(_pattern(name), text, flags=re.S)
    return match.group(1) if match else None


def main():
    with open(README, encoding="utf-8") as f:
        text = f.read()
    for name, make in TABLES.items():
        if block(text, name) is None:
            raise SystemExit(f"README.md has no <!-- {name}:start --> ... <!-- {name}:end --> markers")
        table = make()
        text = re.sub(_pattern(name),
                      lambda _: f"<!-- {name}:start -->\n{table}\n<!-- {name}:end -->", text, flags=re.S)
        print(f"{name}:\n{table}\n")
    with open(README, "w", encoding="utf-8") as f:
        f.write(text)


if __name__ == "__main__":
    main()
