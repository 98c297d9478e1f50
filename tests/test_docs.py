"""README figures are the output of scripts/readme_tables.py, never typed by hand."""

import pytest

from helpers import load_script

TABLES = load_script("readme_tables")


@pytest.mark.parametrize("name", sorted(TABLES.TABLES))
def test_readme_block_is_what_the_script_writes(name):
    with open(TABLES.README, encoding="utf-8") as f:
        readme = f.read()
    assert TABLES.block(readme, name) == TABLES.TABLES[name](), (
        f"README.md's {name} differs from its sources; rerun `python scripts/readme_tables.py`")


def test_likelihood_table_shows_the_cards_standard_errors():
    import vaezoo

    table = TABLES.likelihood_table()
    for name in TABLES.ZOO_LIKELIHOOD_ROWS:
        metric = vaezoo.info(name)["metrics"]["iwae"]
        assert f"{-metric['value']:.2f} +- {metric['stderr']:.2f}" in table


def test_throughput_summary_spans_every_recorded_run():
    # two made-up runs: the summary must be the range over both, ratios within each run
    section = ("\n## {title}\n\n| model | peer | xla | images/s |\n|---|---|---|---|\n"
               "| vae-conv-28 | vaezoo | off | {a} |\n| vae-conv-28 | vaezoo | on | 9999.0 |\n"
               "| vae-conv-28 | keras-fit | off | {b} |\n")
    text = "# Benchmark results\n" + section.format(title=TABLES.PEER_TITLE, a=100.0, b=50.0) + \
        section.format(title=TABLES.PEER_TITLE, a=80.0, b=160.0)
    row = TABLES.throughput_table(text).splitlines()[2]
    assert "| 0.50-1.00 (80-100 images/s; fastest in 1 of 2 runs) | 0.50-1.00 (50-160 images/s; fastest in 1 of 2 runs) |" in row


def test_latency_table_summarises_the_last_run_with_its_xla_column():
    # two made-up runs: only the last counts; ranges over models; "does not compile" shown as such
    old = ("\n## {t}\n\n| model | method | batch | API ms | API / SavedModel | eager / API |\n|---|---|---|---|---|---|\n"
           "| a | encode | 1 | 1 | 9.00 | 9.0 |\n")
    last = ("\n## {t}\n\n| model | method | batch | API ms | API / SavedModel | eager / API | XLA / API |\n"
            "|---|---|---|---|---|---|---|\n| a | encode | 1 | 1 | 1.10 | 3.0 | 0.80 |\n"
            "| b | encode | 1 | 1 | 1.30 | 5.0 | 0.90 |\n| a | iwae | 1 | 1 |  | 4.0 | does not compile |\n"
            "\n- a: sample / reconstruct at batch 64 (API, per image): 2.0x\n")
    text = "# Benchmark results\n" + old.format(t=TABLES.LATENCY_TITLE) + last.format(t=TABLES.LATENCY_TITLE)
    lines = TABLES.latency_table(text).splitlines()
    assert lines[0].endswith("| XLA cores / API | models |")
    assert lines[2] == "| encode | 1 | 1.10-1.30x | 3.0-5.0x | 0.80-0.90x | 2 |"
    assert lines[3] == "| iwae | 1 | - | 4.0x | does not compile | 1 |"
    assert lines[-1] == "- a: sample / reconstruct at batch 64 (API, per image): 2.0x"


def test_rate_distortion_block_shows_the_last_run_only():
    # made-up sections: the photos' are from an older run (left out); of the every-point table only vaezoo's rows
    from rate_distortion import CIFAR_POINTS_TITLE, CIFAR_TITLE, PHOTOS_TITLE

    def section(title, date, *rows):
        return (f"\n## {title}\n\n- command: `python benchmarks/rate_distortion.py`\n- date: {date}\n- code: git 0\n"
                "- hardware: h\n- run: r\n- protocol: p\n\n| codec |\n|---|\n" + "".join(f"| {r} |\n" for r in rows))

    text = ("# Benchmark results\n" + section(PHOTOS_TITLE, "old", "old photos")
            + section(CIFAR_POINTS_TITLE, "new", "JPEG quality 1", "vaezoo m, one file per image")
            + section(CIFAR_TITLE, "new", "vaezoo against the classic codecs"))
    block = TABLES.rate_distortion_block(text)
    assert "| vaezoo m, one file per image |" in block and "| vaezoo against the classic codecs |" in block
    assert "JPEG quality 1" not in block and "old photos" not in block and "rate_distortion_photos.png" not in block
