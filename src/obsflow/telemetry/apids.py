"""Which APIDs carry what: the profile's assignment of payload kinds, and the idle APID.

Kept apart from :mod:`obsflow.telemetry.payloads` and
:mod:`obsflow.telemetry.packets` (which need numpy) so that light commands
(``obsflow status`` reports packets of unknown APIDs) start without numpy.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from obsflow.profiles import Profile

__all__ = ["IDLE_APID", "PayloadKind", "apid_kinds"]

IDLE_APID = 2047
"""CCSDS idle packets: fill, never data, ignored without a word."""


class PayloadKind(enum.Enum):
    """What a packet's payload holds; the profile assigns APIDs to kinds."""

    SCIENCE = "science"
    ENGINEERING = "engineering"
    OBSERVATION_LOG = "observation log"


def apid_kinds(profile: Profile) -> dict[int, PayloadKind]:
    """Which payload each of the profile's APIDs carries.

    Parameters
    ----------
    profile : obsflow.profiles.Profile
        One science APID per detector, ``apids.engineering`` and
        ``apids.housekeeping`` (the observation log).

    Returns
    -------
    dict
        APID -> :class:`PayloadKind`, science APIDs first.
    """
    kinds = dict.fromkeys(profile.science_apids(), PayloadKind.SCIENCE)
    kinds[profile.apids.engineering] = PayloadKind.ENGINEERING
    kinds[profile.apids.housekeeping] = PayloadKind.OBSERVATION_LOG
    return kinds
