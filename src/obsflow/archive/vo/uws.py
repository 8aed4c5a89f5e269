"""UWS 1.1 jobs of the TAP ``/async`` endpoint: the job store and its XML documents.

A :class:`Job` holds one async query: its owner (the caller's user name,
or None for anonymous callers), parameters, phase (PENDING, QUEUED,
EXECUTING, COMPLETED, ERROR, ABORTED), times, and its result or error
VOTable.  :class:`JobStore` keeps the jobs of one server in memory
(thread-safe; at most :data:`MAX_JOBS`, each destroyed at its destruction
time, by default :data:`RETENTION_S` after creation).  Job ids are 128 random
bits: a job is found only by its owner (another user, or an anonymous
caller, gets 404), and the job list shows only the caller's own jobs.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from xml.sax.saxutils import escape, quoteattr

from obsflow.exceptions import VOQueryError

__all__ = ["EXECUTION_DURATION_S", "Job", "JobStore", "MAX_JOBS", "PHASES", "RETENTION_S",
           "job_xml", "jobs_xml", "parameters_xml", "parse_destruction", "results_xml"]

RETENTION_S = 86_400
"""Seconds a job is kept after creation unless its DESTRUCTION is set earlier."""

EXECUTION_DURATION_S = 10
"""Longest run of a job, seconds (the TAP query timeout)."""

MAX_JOBS = 1000
"""Jobs kept per server; creating more answers an error until some are destroyed."""

PHASES = ("PENDING", "QUEUED", "EXECUTING", "COMPLETED", "ERROR", "ABORTED")

_NS = ('xmlns:uws="http://www.ivoa.net/xml/UWS/v1.0" '
       'xmlns:xlink="http://www.w3.org/1999/xlink" '
       'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"')


def _iso(when: datetime | None) -> str:
    return "" if when is None else when.replace(microsecond=0).isoformat() + "Z"


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass
class Job:
    """One async query (times naive UTC; ``result``/``error`` are VOTable bytes)."""

    job_id: str
    owner: str | None
    params: dict[str, list[str]]
    created: datetime
    destruction: datetime
    execution_duration: int = EXECUTION_DURATION_S
    phase: str = "PENDING"
    start: datetime | None = None
    end: datetime | None = None
    result: bytes | None = None
    error: bytes | None = None
    error_message: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def set_param(self, name: str, value: str) -> None:
        """Change a parameter (only while PENDING)."""
        if self.phase != "PENDING":
            raise VOQueryError(f"job {self.job_id} is {self.phase}; parameters can change only "
                               "while it is PENDING", 409)
        self.params[name.upper()] = [value]


class JobStore:
    """The jobs of one server (thread-safe, in memory)."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def _expire(self, now: datetime) -> None:
        for job_id in [j for j, job in self._jobs.items() if job.destruction <= now]:
            del self._jobs[job_id]

    def create(self, owner: str | None, params: dict[str, list[str]]) -> Job:
        """A new PENDING job of ``owner``."""
        now = _now()
        with self._lock:
            self._expire(now)
            if len(self._jobs) >= MAX_JOBS:
                raise VOQueryError(f"too many async jobs on this server (at most {MAX_JOBS}); "
                                   "delete finished ones", 503)
            job = Job(secrets.token_hex(16), owner, params, now,
                      now + timedelta(seconds=RETENTION_S))
            self._jobs[job.job_id] = job
        return job

    def get(self, job_id: str, owner: str | None) -> Job:
        """``owner``'s job ``job_id``; 404 for a job that is not there or not theirs."""
        with self._lock:
            self._expire(_now())
            job = self._jobs.get(job_id)
        if job is None or job.owner != owner:
            raise VOQueryError(f"no job {job_id[:40]!r}", 404)
        return job

    def list(self, owner: str | None, phases: set[str] | None = None) -> list[Job]:
        """``owner``'s jobs (anonymous callers: none, as anyone may be anonymous), oldest
        first, optionally only those in ``phases``."""
        if owner is None:
            return []
        with self._lock:
            self._expire(_now())
            jobs = [j for j in self._jobs.values() if j.owner == owner]
        return [j for j in jobs if phases is None or j.phase in phases]

    def delete(self, job: Job) -> None:
        """Destroy ``job`` (aborting it if it runs: its result is dropped)."""
        with self._lock:
            self._jobs.pop(job.job_id, None)
        with job.lock:
            if job.phase in ("PENDING", "QUEUED", "EXECUTING"):
                job.phase = "ABORTED"

    def run(self, job: Job, work: Callable[[Job], bytes]) -> None:
        """Start ``job`` in a thread: ``work`` returns the result VOTable or raises
        :class:`VOQueryError` (the job then ends in ERROR with its message)."""
        with job.lock:
            if job.phase != "PENDING":
                return
            job.phase = "QUEUED"

        def execute() -> None:
            with job.lock:
                if job.phase != "QUEUED":
                    return
                job.phase, job.start = "EXECUTING", _now()
            try:
                result, error, message = work(job), None, ""
            except VOQueryError as exc:
                result, error, message = None, exc, str(exc)
            with job.lock:
                if job.phase != "EXECUTING":
                    return
                job.end = _now()
                if error is None:
                    job.phase, job.result = "COMPLETED", result
                else:
                    from obsflow.archive.vo.votable import error_votable

                    job.phase, job.error_message = "ERROR", message
                    job.error = error_votable(message)

        threading.Thread(target=execute, name=f"tap-job-{job.job_id[:8]}", daemon=True).start()


def _parameters(job: Job) -> str:
    return "".join(f'  <uws:parameter id={quoteattr(name.lower())}>{escape(values[-1])}'
                   "</uws:parameter>\n" for name, values in job.params.items() if values)


def _results(job: Job, base: str) -> str:
    if job.phase != "COMPLETED":
        return ""
    return (f'  <uws:result id="result" xlink:href={quoteattr(base + "/results/result")}'
            ' mime-type="application/x-votable+xml"/>\n')


_HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n'


def parameters_xml(job: Job) -> bytes:
    """The UWS parameters document of ``job``."""
    return (f"{_HEAD}<uws:parameters {_NS}>\n{_parameters(job)}</uws:parameters>\n").encode()


def results_xml(job: Job, base: str) -> bytes:
    """The UWS results list of ``job`` (``base``: the job's absolute URL)."""
    return f"{_HEAD}<uws:results {_NS}>\n{_results(job, base)}</uws:results>\n".encode()


def _nil_or(tag: str, value: str) -> str:
    return f" <uws:{tag}>{value}</uws:{tag}>\n" if value else f' <uws:{tag} xsi:nil="true"/>\n'


def job_xml(job: Job, base: str) -> bytes:
    """The UWS job document; ``base`` is the job's absolute URL."""
    error = ""
    if job.phase == "ERROR":
        error = (' <uws:errorSummary type="fatal" hasDetail="true">\n'
                 f"  <uws:message>{escape(job.error_message)}</uws:message>\n"
                 " </uws:errorSummary>\n")
    return (f"{_HEAD}<uws:job {_NS} version=\"1.1\">\n"
            f" <uws:jobId>{job.job_id}</uws:jobId>\n"
            + _nil_or("ownerId", escape(job.owner or ""))
            + f" <uws:phase>{job.phase}</uws:phase>\n"
            ' <uws:quote xsi:nil="true"/>\n'
            f" <uws:creationTime>{_iso(job.created)}</uws:creationTime>\n"
            + _nil_or("startTime", _iso(job.start)) + _nil_or("endTime", _iso(job.end))
            + f" <uws:executionDuration>{job.execution_duration}</uws:executionDuration>\n"
            f" <uws:destruction>{_iso(job.destruction)}</uws:destruction>\n"
            f" <uws:parameters>\n{_parameters(job)} </uws:parameters>\n"
            f" <uws:results>\n{_results(job, base)} </uws:results>\n"
            f"{error}</uws:job>\n").encode()


def jobs_xml(jobs: list[Job], base: str) -> bytes:
    """The UWS job list; ``base`` is the job list's absolute URL."""
    refs = "".join(f' <uws:jobref id="{j.job_id}" xlink:href={quoteattr(base + "/" + j.job_id)}>'
                   f"<uws:phase>{j.phase}</uws:phase>"
                   f"<uws:creationTime>{_iso(j.created)}</uws:creationTime></uws:jobref>\n"
                   for j in jobs)
    return f'{_HEAD}<uws:jobs {_NS} version="1.1">\n{refs}</uws:jobs>\n'.encode()


def parse_destruction(text: str) -> datetime:
    """An ISO 8601 DESTRUCTION value as naive UTC; :class:`VOQueryError` if it is not one."""
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise VOQueryError(f"DESTRUCTION={text[:40]!r} is not an ISO 8601 time") from None
    if when.tzinfo is not None:
        when = when.astimezone(UTC).replace(tzinfo=None)
    return when
