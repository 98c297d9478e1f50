"""Every case of the bad-input catalogue raises its documented error, and the docs list it."""

import os
import re

import pytest

from bad_input_cases import CASES

DOC = os.path.join(os.path.dirname(__file__), "..", "docs", "bad_inputs.md")


@pytest.mark.parametrize("case_id, what, call, error, pattern", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_a_clear_error(case_id, what, call, error, pattern, tmp_path):
    with pytest.raises(error) as info:
        call(str(tmp_path))
    assert re.search(pattern, str(info.value)), str(info.value)
    assert type(info.value).__module__.split(".")[0] not in ("tensorflow", "keras", "h5py")


def test_catalogue_in_docs_lists_every_case():
    text = open(DOC, encoding="utf-8").read()
    missing = [case_id for case_id, *_ in CASES if f"`{case_id}`" not in text]
    assert missing == [], f"rerun scripts/bad_inputs_table.py; missing: {missing}"
