import pytest
from hypothesis import given
from hypothesis import strategies as st
from swarmfabric.mtu import inner_mtu, outer_size, resolve_mtu


@pytest.mark.parametrize(("underlay", "encrypted", "expected"), [
    (1500, False, 1450),
    (1500, True, 1416),
    (9000, False, 8950),
    (9000, True, 8916),
    (1501, True, 1416),  # the extra byte cannot be used: ESP aligns to 4
    (1504, True, 1420),
])
def test_inner_mtu(underlay, encrypted, expected):
    assert inner_mtu(underlay, encrypted) == expected


def test_1416_fills_a_1500_underlay_exactly():
    assert outer_size(1416, True) == 1500
    assert outer_size(1417, True) > 1500
    assert outer_size(1450, False) == 1500


@given(st.integers(min_value=1400, max_value=65535), st.booleans())
def test_inner_mtu_is_the_largest_that_fits(underlay, encrypted):
    mtu = inner_mtu(underlay, encrypted)
    assert outer_size(mtu, encrypted) <= underlay
    assert outer_size(mtu + 1, encrypted) > underlay


def test_resolve_mtu():
    assert resolve_mtu("auto", 1500, True) == 1416
    assert resolve_mtu(1400, 1500, True) == 1400
    assert resolve_mtu("1400", 1500, False) == 1400
    with pytest.raises(ValueError, match="below the minimum"):
        resolve_mtu("auto", 1300, True)
    with pytest.raises(ValueError, match="'auto' or an integer"):
        resolve_mtu("big", 1500, False)
