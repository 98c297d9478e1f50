"""Regenerate the zoo table in README.md (between the zoo-table markers) from the cards.

Every number in the table comes from a card, and every card metric was written by
`vaezoo eval NAME --write-card`; nothing is typed by hand.

    python scripts/zoo_table.py
"""

import os
import re

from vaezoo import registry

README = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "README.md")
START, END = "<!-- zoo-table:start -->", "<!-- zoo-table:end -->"


def _format(value):
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def table():
    rows = ["| name | family | parameters | data | weights | measured (split, protocol in the card) |",
            "|---|---|---|---|---|---|"]
    for name in registry.list_models():
        card = registry.info(name)
        params = registry.build(name).count_params()
        data = card["data"].get("tfds") or card["data"]["source"]
        if "cifar10_jpeg" in str(card["data"].get("path", "")):
            data = "CIFAR-10 (JPEG q75 copy)"
        weights = f"{card['weights']['bytes'] / 1e6:.1f} MB" if card["weights"] else "recipe only"
        metrics = "; ".join(f"{k} {_format(v['value'])} ({v['split']})" for k, v in (card["metrics"] or {}).items()
                            if not isinstance(v["value"], list))
        rows.append(f"| `{name}` | {card['family']} | {params / 1e6:.2f} M | {data} | {weights} | {metrics or '-'} |")
    return "\n".join(rows)


def main():
    text = open(README, encoding="utf-8").read()
    if START not in text:
        raise SystemExit(f"README.md has no {START} marker")
    text = re.sub(re.escape(START) + ".*?" + re.escape(END), f"{START}\n{table()}\n{END}", text, flags=re.S)
    with open(README, "w", encoding="utf-8") as f:
        f.write(text)
    print(table())


if __name__ == "__main__":
    main()
