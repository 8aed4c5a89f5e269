"""Every error obsflow raises on purpose, in one place.

The hierarchy::

    ObsflowError                      base of everything below
    ├── ConfigError(ValueError)       bad site configuration (file, key, expected)
    ├── ProfileError(ValueError)      bad observatory profile (file, key, expected)
    ├── UnknownOptionError(ValueError) an option outside its allowed values (lists them)
    ├── PacketError(ValueError)       malformed CCSDS stream (file, byte offset, what)
    │   └── TruncatedPacketError      a packet runs past the end of the data
    ├── TelemetryError(ValueError)    values that cannot be packed into (or read from) packets
    │   └── TelemetryTypeError(TypeError)  an array of the wrong dtype for a packet field
    ├── RawFileError(ValueError)      a downlinked file obsflow cannot read (names the file)
    ├── IngestError(RuntimeError)     the ingest ledger cannot do what was asked
    │   └── ExposureNotFoundError(LookupError)  no ledger row or observation log for an exposure
    ├── DataModelError(ValueError)    a product's arrays or keywords are inconsistent
    ├── CalibrationError(ValueError)  inputs a calibration step cannot work on
    ├── AlignmentError(ValueError)    exposures that cannot be aligned (too few matched stars)
    ├── AssociationError(ValueError)  a stage-3 association file or member set that cannot be used
    ├── SimulationError(ValueError)   simulator options that contradict each other
    ├── ResampleError(ValueError)     bad input to the stage-3 resample (shapes, kernel, grid)
    ├── CatalogError(ValueError)      bad input to the stage-3 source catalog (shapes, options, PSF)
    ├── ColourImageError(ValueError)  bad input to the stage-3 colour image (shapes, stretch, tiles)
    ├── OutlierError(ValueError)      bad input to stage-3 outlier detection (names the input, field)
    ├── TransitFitError(ValueError)   a light curve a transit cannot be fitted to
    ├── EtcError(ValueError)          an exposure-time request that cannot be met (names why)
    ├── ProposalError(ValueError)     a program file that is invalid (file, field, expected)
    ├── PlanningError(ValueError)     a visibility or scheduling request that cannot be met
    ├── ReferenceFileError(ValueError) a reference file unreadable, incomplete or not fitting the profile
    ├── RefContextError(RuntimeError) a reference context that cannot be made or changed
    │   └── ContextNotFoundError(LookupError)  no context with that number (names the range)
    ├── SiteError(RuntimeError)       a site folder that is missing or inconsistent
    ├── ArchiveError(RuntimeError)    anything the archive refuses
    │   ├── ProductNotFoundError(LookupError)  no such product, or one the caller may not see
    │   ├── ProductFileError(ValueError)       a file that cannot be registered (what is missing)
    │   ├── ChecksumMismatchError              stored bytes differ from the recorded sha256
    │   ├── HipsError                          the HiPS cannot be built (an input image, the hips link)
    │   ├── AuthenticationError(PermissionError) unknown, expired or malformed credentials
    │   │   └── TooManyAttemptsError           too many bad credentials from one address
    │   ├── RangeNotSatisfiableError(ValueError) a Range header outside the file (416)
    │   ├── SearchParameterError(ValueError)   a bad field in a web search form
    │   ├── QueryValueError(ValueError)        a request value the catalog cannot hold (HTTP 400)
    │   ├── SelectionError(ValueError)         a bulk-download selection that cannot be served (400)
    │   └── VOQueryError(ValueError)           a bad SIA2 / TAP (ADQL) request (VOTable error)
    ├── OrchestrateError(RuntimeError) the job layer cannot do what was asked
    │   ├── JobNotFoundError(LookupError)      no job with that id
    │   ├── JobStateError                      the job's state does not allow it
    │   └── ExecutorError                      an executor cannot start (no scheduler, no schedd)
    └── CampaignError(LookupError)    no such reprocessing campaign, or one that cannot do it

Each error has exactly one import path: ``from obsflow.exceptions import ...``.

The archive's HTTP layer maps its errors to 404, 400, 416, 503, 401 and 429
(JSON ``{"error": ..., "status": N}``; VOTable errors on the VO endpoints).

Domain errors also inherit the matching built-in, so ``except ValueError``
in a caller's script still catches a bad packet.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "AlignmentError",
    "AssociationError",
    "ArchiveError",
    "AuthenticationError",
    "CalibrationError",
    "CatalogError",
    "ColourImageError",
    "CampaignError",
    "DataModelError",
    "EtcError",
    "ExposureNotFoundError",
    "IngestError",
    "RangeNotSatisfiableError",
    "RawFileError",
    "ResampleError",
    "SearchParameterError",
    "SimulationError",
    "TelemetryError",
    "TelemetryTypeError",
    "TransitFitError",
    "ChecksumMismatchError",
    "ConfigError",
    "ExecutorError",
    "HipsError",
    "JobNotFoundError",
    "JobStateError",
    "ObsflowError",
    "OutlierError",
    "OrchestrateError",
    "ProductFileError",
    "ProductNotFoundError",
    "VOQueryError",
    "ADQLBareValueError",
    "PacketError",
    "PlanningError",
    "ProposalError",
    "QueryValueError",
    "ProfileError",
    "RefContextError",
    "ContextNotFoundError",
    "ReferenceFileError",
    "SelectionError",
    "SiteError",
    "TooManyAttemptsError",
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


class TelemetryError(ObsflowError, ValueError):
    """Values that cannot be packed into packets or read back (field ranges, payload layouts)."""


class TelemetryTypeError(TelemetryError, TypeError):
    """An array handed to the packet code has the wrong dtype (the message names the field)."""


class RawFileError(ObsflowError, ValueError):
    """A downlinked raw file obsflow cannot read; the message names the file and what was expected."""


class IngestError(ObsflowError, RuntimeError):
    """The ingest ledger cannot do what was asked."""


class ExposureNotFoundError(IngestError, LookupError):
    """An exposure with no ledger row or observation-log record."""


class DataModelError(ObsflowError, ValueError):
    """A data product's arrays, keywords or identity fields are missing or inconsistent."""


class CalibrationError(ObsflowError, ValueError):
    """Inputs a calibration step cannot work on (shapes, readout timing, no usable pixel)."""


class AlignmentError(ObsflowError, ValueError):
    """Exposures that cannot be aligned: too few stars detected or matched (names which)."""


class AssociationError(ObsflowError, ValueError):
    """A stage-3 association file or member set that cannot be used (names the file and field)."""


class ResampleError(ObsflowError, ValueError):
    """Bad input to the stage-3 resample (drizzle) step: shapes, kernel, grid or weights."""


class CatalogError(ObsflowError, ValueError):
    """Input the stage-3 source catalog cannot work on (array shapes, options, PSF, aperture radii)."""


class ColourImageError(ObsflowError, ValueError):
    """Input a colour image cannot be made from (mosaic shapes, stretch options, tile sizes)."""


class OutlierError(ObsflowError, ValueError):
    """Bad input to stage-3 outlier detection: shapes, WCS or options (names the input and field)."""


class SimulationError(ObsflowError, ValueError):
    """Simulator options that cannot be honoured together."""


class TransitFitError(ObsflowError, ValueError):
    """A light curve that cannot be fitted with a transit (too few usable points)."""


class EtcError(ObsflowError, ValueError):
    """An exposure-time request that cannot be met (saturates, S/N out of reach, bad source)."""


class ProposalError(ObsflowError, ValueError):
    """A program (proposal) file is invalid: the message names the file, field and expected value."""


class PlanningError(ObsflowError, ValueError):
    """A visibility or scheduling request that cannot be met (names the target or plan)."""


class ReferenceFileError(ObsflowError, ValueError):
    """A reference file is unreadable, incomplete or does not fit the profile."""


class RefContextError(ObsflowError, RuntimeError):
    """A reference context cannot be created, or something tried to change one."""


class ContextNotFoundError(RefContextError, LookupError):
    """No reference context has the given number; the message names the numbers that exist."""


class SiteError(ObsflowError, RuntimeError):
    """A site folder is missing, incomplete or inconsistent."""


class ArchiveError(ObsflowError, RuntimeError):
    """Base of every archive error."""


class ProductNotFoundError(ArchiveError, LookupError):
    """No such product, or one the caller may not see (the two are never told apart)."""


class ProductFileError(ArchiveError, ValueError):
    """A product file that cannot be read or registered (empty, not FITS, truncated, a keyword,
    HDU, data type or shape not as expected); the message names the file, the HDU or keyword and
    what was expected."""


class HipsError(ArchiveError):
    """The archive's HiPS cannot be built: an input image without a 2-D SCI and celestial WCS,
    or the site's ``hips`` path is not the link obsflow makes."""


class ChecksumMismatchError(ArchiveError):
    """A stored file's sha256 differs from the one recorded at registration."""


class AuthenticationError(ArchiveError, PermissionError):
    """Unknown, expired or malformed credentials."""


class RangeNotSatisfiableError(ArchiveError, ValueError):
    """A Range header that selects no byte of the file (answered 416).

    ``size`` is the file's length in bytes (for ``Content-Range: bytes */size``).
    """

    def __init__(self, message: str, size: int) -> None:
        super().__init__(message)
        self.size = size


class SearchParameterError(ArchiveError, ValueError):
    """A web search form field the archive cannot use (answered 400 with the message)."""


class TooManyAttemptsError(AuthenticationError):
    """A client address sent too many bad credentials; refused until ``retry_after_s`` passed.

    Answered 429 with ``Retry-After`` (seconds), whatever the credentials.
    """

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class QueryValueError(ArchiveError, ValueError):
    """A request value outside what the catalog database can hold (an integer beyond 64 bits,
    a NaN, text with NUL); the message names the parameter and the accepted range."""


class SelectionError(ArchiveError, ValueError):
    """A bulk-download selection that cannot be served: an id that is not a product id, or
    more products or bytes than one download may hold (the message names which and the limit)."""


class VOQueryError(ArchiveError, ValueError):
    """A Virtual Observatory request the archive cannot answer: bad parameter or ADQL.

    ``status`` is the HTTP status of the VOTable error document (400 unless set).
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class ADQLBareValueError(VOQueryError):
    """ADQL: a value stands where a condition is needed, e.g. ``WHERE s_ra``.

    The parser raises it inside parentheses and retries the text as a
    parenthesised value (``(t_max - t_min) * 86400 > 100``); ``value`` is the
    syntax tree of the value.
    """

    def __init__(self, value: object) -> None:
        super().__init__("ADQL syntax error: a value is not a condition (compare it with "
                         "something)")
        self.value = value


class OrchestrateError(ObsflowError, RuntimeError):
    """The job layer cannot do what was asked."""


class JobNotFoundError(OrchestrateError, LookupError):
    """No job has the given id."""


class JobStateError(OrchestrateError):
    """The job's state does not allow the operation (e.g. retrying a running job)."""


class ExecutorError(OrchestrateError):
    """An executor cannot start: no Dask scheduler at the address, bad settings, ..."""


class CampaignError(ObsflowError, LookupError):
    """No such reprocessing campaign, or a campaign that cannot do what was asked."""
