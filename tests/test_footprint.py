"""What it takes to run a release (access.footprint): the arithmetic, against figures worked out by hand for
OPT-175B (175 × 10⁹ parameters; its fp16 weights are 350 GB)."""

from __future__ import annotations

import pytest
from django.utils import translation

from access import footprint

OPT_175B = 175_000_000_000


def row(result, name):
    return next(p for p in result.precisions if p.name == name)


def test_it_computes_opt_175bs_weights_at_each_precision_in_decimal_gb_and_gib():
    result = footprint.footprint(parameters=OPT_175B, download_bytes=0)
    assert [p.name for p in result.precisions] == ["fp32", "bf16", "int8", "int4"]
    # By hand: 175e9 × 4 bytes = 700e9 bytes = 700 GB = 700e9 / 2^30 GiB = 651.93 GiB; and so on.
    assert [p.bytes for p in result.precisions] == [700 * 10**9, 350 * 10**9, 175 * 10**9, 87_500_000_000]
    assert [p.gb for p in result.precisions] == [700.0, 350.0, 175.0, 87.5]
    assert [round(p.gib, 2) for p in result.precisions] == [651.93, 325.96, 162.98, 81.49]


def test_it_counts_the_cards_that_hold_opt_175bs_weights():
    result = footprint.footprint(parameters=OPT_175B, download_bytes=0)
    # 700/80 = 8.75 → 9; 350/80 = 4.375 → 5; 175/80 = 2.19 → 3; 87.5/80 = 1.09 → 2.
    assert [p.accelerators for p in result.precisions] == [9, 5, 3, 2]
    # 700/24 = 29.2 → 30; 350/24 = 14.6 → 15; 175/24 = 7.3 → 8; 87.5/24 = 3.6 → 4.
    assert [p.consumer_cards for p in result.precisions] == [30, 15, 8, 4]


def test_a_card_that_is_exactly_full_is_enough_and_a_tiny_model_needs_one():
    assert footprint.cards_needed(80 * 10**9, 80) == 1
    assert footprint.cards_needed(80 * 10**9 + 1, 80) == 2
    assert footprint.cards_needed(250_000_000, 24) == 1


def test_it_times_opt_175bs_fp16_download_at_three_link_speeds():
    result = footprint.footprint(parameters=OPT_175B, download_bytes=350 * 10**9, stored_dtype="fp16")
    # 350e9 bytes × 8 = 2.8e12 bits: 28 000 s at 10^8 bit/s, 2 800 s at 10^9, 280 s at 10^10.
    assert [(t.link, t.seconds) for t in result.transfers] == [
        ("100 Mbit/s", 28_000.0),
        ("1 Gbit/s", 2_800.0),
        ("10 Gbit/s", 280.0),
    ]
    with translation.override("en"):
        assert [footprint.duration_text(t.seconds) for t in result.transfers] == ["7 h 47 min", "47 min", "5 min"]
    # The stored precision is what the release manager said: fp16 is the 16-bit row.
    assert [p.name for p in result.precisions if p.stored] == ["bf16"]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.2, "< 1 s"), (42.4, "42 s"), (60, "1 min"), (3600, "1 h"), (3900, "1 h 5 min"), (3 * 86400, "3 d")],
)
def test_durations_read_as_people_say_them(seconds, text):
    with translation.override("en"):
        assert footprint.duration_text(seconds) == text


def test_no_parameter_count_no_memory_figures_but_the_download_still_counts():
    result = footprint.footprint(parameters=None, download_bytes=10**9)
    assert result.precisions == ()
    assert result.transfers[1].seconds == 8.0
