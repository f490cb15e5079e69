"""What it takes to run a release: the weights' memory at each precision, how many accelerators hold them, how
long the download takes. Pure arithmetic on the parameter count and the files' total size; nothing is read from
the files themselves (the weights' stored dtype is what a release manager says, never guessed by unpickling).

Memory is in decimal gigabytes (10⁹ bytes), as accelerators are sold (an "80 GB" card holds 80 × 10⁹ bytes);
GiB (2³⁰ bytes) are given beside them, as tools such as nvidia-smi report. The counts are for the weights alone:
running the model needs more, for activations and the KV cache, which grow with batch size and context length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from django.utils.translation import gettext as _

GB = 10**9
GIB = 2**30

# Bytes per parameter of each precision the page shows, in the order shown.
PRECISIONS = (("fp32", 4.0), ("bf16", 2.0), ("int8", 1.0), ("int4", 0.5))
BYTES_PER_PARAMETER = dict(PRECISIONS) | {"fp16": 2.0}
# The cards the counts are for: a data-centre accelerator (A100/H100 80 GB) and a consumer card (RTX 3090/4090).
ACCELERATOR_GB = 80
CONSUMER_CARD_GB = 24
# Link speeds, in bits per second (decimal: 1 Gbit/s is 10⁹ bit/s).
LINKS = (("100 Mbit/s", 100 * 10**6), ("1 Gbit/s", 10**9), ("10 Gbit/s", 10 * 10**9))


@dataclass(frozen=True)
class Precision:
    name: str
    bytes: int
    accelerators: int  # 80 GB accelerators that hold the weights
    consumer_cards: int  # 24 GB cards that hold the weights
    stored: bool  # the weights are stored at this precision (as the release manager says)

    @property
    def gb(self) -> float:
        return self.bytes / GB

    @property
    def gib(self) -> float:
        return self.bytes / GIB


@dataclass(frozen=True)
class Transfer:
    link: str
    bits_per_second: int
    seconds: float


@dataclass(frozen=True)
class Footprint:
    parameters: int | None
    precisions: tuple[Precision, ...]
    download_bytes: int
    transfers: tuple[Transfer, ...]
    stored_dtype: str


def weights_bytes(parameters: int, dtype: str) -> int:
    """The weights' size at a precision: parameters × bytes per parameter (int4 packs two per byte)."""
    return math.ceil(parameters * BYTES_PER_PARAMETER[dtype])


def cards_needed(size: int, card_gb: int) -> int:
    """How many cards of `card_gb` decimal GB hold `size` bytes of weights (at least one)."""
    return max(1, math.ceil(size / (card_gb * GB)))


def transfer_seconds(size: int, bits_per_second: int) -> float:
    return size * 8 / bits_per_second


def footprint(*, parameters: int | None, download_bytes: int, stored_dtype: str = "") -> Footprint:
    """The figures for a release; `precisions` is empty when the parameter count is unknown."""
    precisions = ()
    if parameters:
        rows = []
        for name, _per in PRECISIONS:
            size = weights_bytes(parameters, name)
            rows.append(
                Precision(
                    name=name,
                    bytes=size,
                    accelerators=cards_needed(size, ACCELERATOR_GB),
                    consumer_cards=cards_needed(size, CONSUMER_CARD_GB),
                    stored=stored_dtype == name or (stored_dtype == "fp16" and name == "bf16"),
                )
            )
        precisions = tuple(rows)
    transfers = tuple(
        Transfer(link=label, bits_per_second=bps, seconds=transfer_seconds(download_bytes, bps)) for label, bps in LINKS
    )
    return Footprint(
        parameters=parameters,
        precisions=precisions,
        download_bytes=download_bytes,
        transfers=transfers,
        stored_dtype=stored_dtype,
    )


def duration_text(seconds: float) -> str:
    """A transfer time as people say it, in the reader's language: '< 1 s', '42 s', '3 min', '1 h 5 min',
    '2 d 3 h'."""
    if seconds < 1:
        return _("< 1 s")
    if seconds < 60:
        return _("%(s)d s") % {"s": round(seconds)}
    minutes = round(seconds / 60)
    if minutes < 60:
        return _("%(m)d min") % {"m": minutes}
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return (_("%(h)d h %(m)d min") if minutes else _("%(h)d h")) % {"h": hours, "m": minutes}
    days, hours = divmod(hours, 24)
    return (_("%(d)d d %(h)d h") if hours else _("%(d)d d")) % {"d": days, "h": hours}
