"""Run every bad-input case (tests/bad_input_cases.py) and write docs/bad_inputs.md.

    python scripts/bad_inputs_table.py
"""

import os
import re
import sys
import tempfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "tests"))
from bad_input_cases import CASES  # noqa: E402

#: the temporary folders the cases write in, shown as `$TMP` (so a rerun changes no row for them)
TEMPORARY = re.compile(re.escape(tempfile.gettempdir()) + r"/tmp[\w-]+")


def main():
    import keras

    rows = ["| case | what is wrong | error | message |", "|---|---|---|---|"]
    for case_id, what, call, expected, _ in CASES:
        keras.utils.set_random_seed(0)  # the same weights (and so hashes in messages) on every rerun
        with tempfile.TemporaryDirectory() as folder:
            try:
                call(folder)
                raise SystemExit(f"{case_id}: no error raised")
            except expected as error:
                message = TEMPORARY.sub("$TMP", str(error)).replace("|", "\\|").replace("\n", " ")
                rows.append(f"| `{case_id}` | {what} | `{type(error).__name__}` | {message} |")
    text = ("# Bad inputs and the errors they get\n\n"
            "Each row is a case of `tests/bad_input_cases.py`, run by `scripts/bad_inputs_table.py`; "
            "`tests/test_bad_inputs.py` checks every case raises this error with a message naming what "
            "was expected. The CLI prints the same message after `vaezoo COMMAND: error:` and exits "
            "with status 2.\n\n" + "\n".join(rows) + "\n")
    path = os.path.join(ROOT, "docs", "bad_inputs.md")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"{len(CASES)} cases -> {path}")


if __name__ == "__main__":
    main()
