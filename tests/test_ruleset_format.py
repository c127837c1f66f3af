"""How evidence values read in a nurse's reason sentence."""
import pytest

from engine.ruleset.evidence import format_value


@pytest.mark.parametrize("value,unit,text", [
    (16.2, "s", "16.2 s"),             # a chair-rise time is not '0m'
    (0.27, "min", "16.2 s"),
    (90, "min", "1h30m"),
    (2.5, "d", "2d12h"),
    (69.995, "%", "69.995%"),          # just under a 70 % target must not read '70%'
    (2.5, "kg", "2.5 kg"),
    (81.19985, "kg", "81.2 kg"),
    (None, "kg", "unknown"),
    (float("nan"), "%", "unknown"),
    (True, "", "yes"),
])
def test_format_value(value, unit, text):
    assert format_value(value, unit) == text
