"""server.trips.plates: the plates a rider types, one canonical form, the rest refused."""

import re
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.trips import plates

pytestmark = pytest.mark.no_services

CANONICAL = re.compile(r"[A-Z0-9]+(-[A-Z0-9]+)*")


@pytest.mark.parametrize(("typed", "canonical"), [
    ("ABC-1234", "ABC-1234"),
    ("AB-1234", "AB-1234"),
    ("1234-AB", "1234-AB"),
    ("ABC-123", "ABC-123"),
    ("abc 1234", "ABC-1234"),
    ("ABC1234", "ABC-1234"),
    ("abc.1234", "ABC-1234"),
    ("1234ab", "1234-AB"),
    ("  rab-5678 ", "RAB-5678"),
    ("ＡＢＣ－１２３４", "ABC-1234"),
    ("ａｂｃ\u3000１２３４", "ABC-1234"),
    ("12-3456", "12-3456"),
    ("123456", "123456"),
    ("AB12CD", "AB12CD"),
    ("ab12 cde", "AB12-CDE"),
    ("1A-2345", "1A-2345"),
    ("A-B-C-1", "A-B-C-1"),
    ("AB", "AB"),
    ("12345678", "12345678"),
    ("ABCD-1234", "ABCD-1234"),
])
def test_a_plausible_plate_is_upper_cased_into_its_one_dashed_form(typed, canonical):
    assert plates.normalise(typed) == canonical


@pytest.mark.parametrize("typed", [
    "", " ", "-", " - . ", "A", "1", "ABC--1234", "ABC- 1234", "-ABC-1234", "ABC-1234-", "ABC_1234",
    "ABC/1234", "ABC#1234", "ABC\t1234", "ABC\n1234", "ABC\x001234", "ABC\u200b1234", "ABC–1234",
    "ABCDE-12345", "123456789", "ÄBC-1234", "ßB-1234", "ıB-1234", "АВС-1234", "京A-12345", "台北-1234",
    "A" * 65, None, 1234, b"ABC-1234", ["ABC-1234"],
])
def test_anything_else_is_not_a_plate(typed):
    assert plates.normalise(typed) is None


groups = st.lists(st.text(string.ascii_uppercase + string.digits, min_size=1, max_size=4), min_size=1, max_size=4)
FULL_WIDTH = str.maketrans({c: chr(ord(c) + 0xFEE0) for c in string.ascii_letters + string.digits + "-"})


@settings(max_examples=300, deadline=None)
@given(groups=groups.filter(lambda g: 2 <= len("".join(g)) <= 8), separators=st.data())
def test_a_plate_is_the_same_plate_whatever_separators_case_and_width_it_is_typed_with(groups, separators):
    canonical = plates.normalise("-".join(groups))
    assert canonical is not None and CANONICAL.fullmatch(canonical)
    typed = groups[0] + "".join(separators.draw(st.sampled_from(" .-")) + group for group in groups[1:])
    assert plates.normalise(typed) == canonical
    assert plates.normalise(typed.lower()) == canonical
    assert plates.normalise(typed.translate(FULL_WIDTH)) == canonical
    assert plates.normalise(canonical) == canonical


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=20))
def test_any_text_is_refused_or_canonical_and_normalising_twice_changes_nothing(typed):
    canonical = plates.normalise(typed)
    if canonical is not None:
        assert CANONICAL.fullmatch(canonical)
        assert 2 <= len(canonical.replace("-", "")) <= 8
        assert plates.normalise(canonical) == canonical
