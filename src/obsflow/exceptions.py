"""Every error obsflow raises on purpose, in one place.

The hierarchy::

    ObsflowError                      base of everything below
    ├── ConfigError(ValueError)       bad site configuration (file, key, expected)
    ├── ProfileError(ValueError)      bad observatory profile (file, key, expected)
    ├── UnknownOptionError(ValueError) an option outside its allowed values (lists them)
    ├── PacketError(ValueError)       malformed CCSDS stream (file, byte offset, what)
    │   └── TruncatedPacketError      a packet runs past the end of the data
    ├── ReferenceFileError(ValueError) a reference file unreadable, incomplete or not fitting the profile
    └── SiteError(RuntimeError)       a site folder that is missing or inconsistent

Domain errors also inherit the matching built-in, so ``except ValueError``
in a caller's script still catches a bad packet.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "ConfigError",
    "ObsflowError",
    "PacketError",
    "ProfileError",
    "ReferenceFileError",
    "SiteError",
    "TruncatedPacketError",
    "UnknownOptionError",
]


class ObsflowError(Exception):
    """Base class of every error obsflow raises deliberately."""


class ConfigError(ObsflowError, ValueError):
    """The site configuration (TOML file or ``OBSFLOW_*`` variable) is invalid."""


class ProfileError(ObsflowError, ValueError):
    """An observatory profile is invalid or asks for something it does not define."""


class UnknownOptionError(ObsflowError, ValueError):
    """A named option is not one of the allowed values."""

    def __init__(self, what: str, value: object, allowed: Iterable[object]) -> None:
        self.what = what
        self.value = value
        self.allowed = sorted(str(a) for a in allowed)
        super().__init__(f"unknown {what} {value!r}; allowed: {', '.join(self.allowed)}")


class PacketError(ObsflowError, ValueError):
    """A CCSDS packet stream is malformed.

    Parameters
    ----------
    source : str
        File name (or other label) of the stream.
    offset : int
        Byte offset in the stream where the problem starts.
    reason : str
        What was wrong and what was expected.
    """

    def __init__(self, source: str, offset: int, reason: str) -> None:
        self.source = source
        self.offset = offset
        self.reason = reason
        super().__init__(f"{source}: byte offset {offset}: {reason}")


class TruncatedPacketError(PacketError):
    """A packet's length field points past the end of the stream."""


class ReferenceFileError(ObsflowError, ValueError):
    """A reference file is unreadable, incomplete or does not fit the profile."""


class SiteError(ObsflowError, RuntimeError):
    """A site folder is missing, incomplete or inconsistent."""
