"""``/vo/tap/async``: TAP async queries as UWS 1.1 jobs (:mod:`obsflow.archive.vo.uws`).

``POST /vo/tap/async`` (the sync parameters, optionally ``PHASE=RUN``)
creates a job and answers 303 to it; the job's resources (``phase``,
``executionduration``, ``destruction``, ``quote``, ``owner``,
``parameters``, ``error``, ``results/result``) follow UWS.  A job runs as
the caller who started it, under the same exclusive-access policy as a sync
query; only its owner finds it.  Every failure answers a VOTable error.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from obsflow.archive.api.responses import votable_errors
from obsflow.archive.vo.common import VoCall, vo_answer
from obsflow.archive.vo.uws import (
    EXECUTION_DURATION_S,
    Job,
    JobStore,
    job_xml,
    jobs_xml,
    parameters_xml,
    parse_destruction,
    results_xml,
)
from obsflow.exceptions import VOQueryError

__all__ = ["add_async_endpoints"]

MAX_WAIT_S = 30.0
"""Longest a ``GET job?WAIT=n`` blocks, seconds."""

_ACTIVE = {"PENDING", "QUEUED", "EXECUTING"}

_ERRORS = votable_errors(400, 401, 404, 409, 429)
_REDIRECT: dict[int | str, dict[str, Any]] = {
    303: {"description": "Done: see the job (or the job list)"}, **_ERRORS}
_XML: dict[int | str, dict[str, Any]] = {
    200: {"description": "A UWS document", "content": {"text/xml": {"schema": {"type": "string"}}}},
    **_ERRORS}
_TEXT: dict[int | str, dict[str, Any]] = {
    200: {"description": "The value", "content": {"text/plain": {"schema": {"type": "string"}}}},
    **_ERRORS}
_VOTABLE: dict[int | str, dict[str, Any]] = {
    200: {"description": "A VOTable",
          "content": {"application/x-votable+xml": {"schema": {"type": "string"}}}},
    **_ERRORS}


def _store(request: Request) -> JobStore:
    state = request.app.state
    if not hasattr(state, "tap_jobs"):
        state.tap_jobs = JobStore()
    store: JobStore = state.tap_jobs
    return store


def _single(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    return values[-1].strip() if values else None


def _text(value: str) -> Response:
    return Response(value, media_type="text/plain")


def _xml(body: bytes) -> Response:
    return Response(body, media_type="text/xml")


def add_async_endpoints(router: APIRouter, run_query: Callable[[VoCall], bytes]) -> None:
    """Add the UWS endpoints under ``router.prefix + "/async"``; ``run_query`` is the sync
    query (parameters -> result VOTable), run in a thread for each job."""
    def base_of(call: VoCall) -> str:
        return call.base_url + router.prefix + "/async"

    def owner(call: VoCall) -> str | None:
        return call.viewer.name

    def start(store: JobStore, job: Job, call: VoCall) -> None:
        def work(j: Job) -> bytes:
            return run_query(dataclasses.replace(call, params=dict(j.params)))
        store.run(job, work)

    def update(store: JobStore, job: Job, call: VoCall) -> None:
        """Apply PHASE / DESTRUCTION / EXECUTIONDURATION / other parameters of a POST."""
        for name, values in call.params.items():
            value = values[-1].strip()
            if name == "PHASE":
                if value.upper() == "RUN":
                    start(store, job, call)
                elif value.upper() == "ABORT":
                    with job.lock:
                        if job.phase in _ACTIVE:
                            job.phase = "ABORTED"
                else:
                    raise VOQueryError(f"PHASE={value[:20]!r}: use RUN or ABORT")
            elif name == "DESTRUCTION":
                job.destruction = min(parse_destruction(value), job.destruction)
            elif name == "EXECUTIONDURATION":
                try:
                    seconds = int(value)
                except ValueError:
                    raise VOQueryError(f"EXECUTIONDURATION={value[:20]!r} is not a whole "
                                       "number of seconds") from None
                job.execution_duration = (EXECUTION_DURATION_S if seconds <= 0
                                          else min(seconds, EXECUTION_DURATION_S))
            elif name != "ACTION":
                job.set_param(name, value)

    async def answer(request: Request, handler: Callable[[VoCall, JobStore], Response]
                     ) -> Response:
        store = _store(request)
        return await vo_answer(request, lambda call: handler(call, store))

    @router.post("/async", response_class=Response, summary="TAP async: create a job",
                 status_code=303, responses={**_REDIRECT, 503: {
                     "description": "Too many async jobs on this server (VOTable error)",
                     "content": {"application/x-votable+xml": {"schema": {"type": "string"}}}}})
    async def create(request: Request) -> Response:
        """Create a job from the query parameters; ``PHASE=RUN`` starts it at once."""
        def handler(call: VoCall, store: JobStore) -> Response:
            params = {k: v for k, v in call.params.items() if k != "PHASE"}
            job = store.create(owner(call), params)
            if (_single(call.params, "PHASE") or "").upper() == "RUN":
                start(store, job, call)
            return RedirectResponse(f"{base_of(call)}/{job.job_id}", status_code=303)
        return await answer(request, handler)

    @router.get("/async", response_class=Response, summary="TAP async: the caller's jobs",
                responses=_XML)
    async def job_list(request: Request) -> Response:
        """The caller's jobs (UWS job list); ``PHASE`` filters by phase."""
        def handler(call: VoCall, store: JobStore) -> Response:
            phases = {p.strip().upper() for p in call.params.get("PHASE", [])} or None
            return _xml(jobs_xml(store.list(owner(call), phases), base_of(call)))
        return await answer(request, handler)

    @router.get("/async/{job_id}", response_class=Response, summary="TAP async: a job",
                responses=_XML)
    async def get_job(request: Request, job_id: str) -> Response:
        """The job document; ``WAIT=n`` blocks up to n seconds while the job is active."""
        def handler(call: VoCall, store: JobStore) -> Response:
            job = store.get(job_id, owner(call))
            wait = _single(call.params, "WAIT")
            if wait:
                try:
                    seconds = min(float(wait), MAX_WAIT_S)
                except ValueError:
                    raise VOQueryError(f"WAIT={wait[:20]!r} is not a number") from None
                deadline = time.monotonic() + (MAX_WAIT_S if seconds < 0 else seconds)
                first = job.phase
                while job.phase == first and job.phase in _ACTIVE and \
                        time.monotonic() < deadline:
                    time.sleep(0.05)
            return _xml(job_xml(job, f"{base_of(call)}/{job.job_id}"))
        return await answer(request, handler)

    @router.post("/async/{job_id}", response_class=Response, status_code=303,
                 summary="TAP async: change or delete a job", responses=_REDIRECT)
    async def post_job(request: Request, job_id: str) -> Response:
        """``ACTION=DELETE`` destroys the job; otherwise PHASE, DESTRUCTION,
        EXECUTIONDURATION and (while PENDING) query parameters change it."""
        def handler(call: VoCall, store: JobStore) -> Response:
            job = store.get(job_id, owner(call))
            action = _single(call.params, "ACTION")
            if action is not None:
                if action.upper() != "DELETE":
                    raise VOQueryError(f"ACTION={action[:20]!r}: use DELETE")
                store.delete(job)
                return RedirectResponse(base_of(call), status_code=303)
            update(store, job, call)
            return RedirectResponse(f"{base_of(call)}/{job.job_id}", status_code=303)
        return await answer(request, handler)

    @router.delete("/async/{job_id}", response_class=Response, status_code=303,
                   summary="TAP async: delete a job", responses=_REDIRECT)
    async def delete_job(request: Request, job_id: str) -> Response:
        """Destroy the job (aborting it if it runs)."""
        def handler(call: VoCall, store: JobStore) -> Response:
            store.delete(store.get(job_id, owner(call)))
            return RedirectResponse(base_of(call), status_code=303)
        return await answer(request, handler)

    def attribute(name: str, show: Callable[[Job], str]) -> None:
        @router.get(f"/async/{{job_id}}/{name}", response_class=Response,
                    summary=f"TAP async: a job's {name}", name=f"tap_async_get_{name}",
                    responses=_TEXT)
        async def get_value(request: Request, job_id: str) -> Response:
            return await answer(request, lambda call, store: _text(
                show(store.get(job_id, owner(call)))))

        if name in ("phase", "executionduration", "destruction"):
            @router.post(f"/async/{{job_id}}/{name}", response_class=Response, status_code=303,
                         summary=f"TAP async: set a job's {name}",
                         name=f"tap_async_set_{name}", responses=_REDIRECT)
            async def set_value(request: Request, job_id: str) -> Response:
                def handler(call: VoCall, store: JobStore) -> Response:
                    job = store.get(job_id, owner(call))
                    wanted = name.upper()
                    if wanted not in call.params:
                        raise VOQueryError(f"{wanted} is missing")
                    update(store, job, dataclasses.replace(
                        call, params={wanted: call.params[wanted]}))
                    return RedirectResponse(f"{base_of(call)}/{job.job_id}", status_code=303)
                return await answer(request, handler)

    attribute("phase", lambda job: job.phase)
    attribute("executionduration", lambda job: str(job.execution_duration))
    attribute("destruction",
              lambda job: job.destruction.replace(microsecond=0).isoformat() + "Z")
    attribute("quote", lambda job: "")
    attribute("owner", lambda job: job.owner or "")

    @router.post("/async/{job_id}/parameters", response_class=Response, status_code=303,
                 summary="TAP async: set a PENDING job's parameters", responses=_REDIRECT)
    async def set_parameters(request: Request, job_id: str) -> Response:
        """Change query parameters of a PENDING job (UWS 1.1)."""
        def handler(call: VoCall, store: JobStore) -> Response:
            job = store.get(job_id, owner(call))
            update(store, job, call)
            return RedirectResponse(f"{base_of(call)}/{job.job_id}", status_code=303)
        return await answer(request, handler)

    def document(name: str, responses: dict[int | str, dict[str, Any]],
                 make: Callable[[Job, str], Response]) -> None:
        """``GET /async/{job_id}/<name>``: ``make(job, job URL)``."""
        @router.get(f"/async/{{job_id}}/{name}", response_class=Response,
                    summary=f"TAP async: a job's {name}", name=f"tap_async_{name}",
                    responses=responses)
        async def get_document(request: Request, job_id: str) -> Response:
            def handler(call: VoCall, store: JobStore) -> Response:
                job = store.get(job_id, owner(call))
                return make(job, f"{base_of(call)}/{job.job_id}")
            return await answer(request, handler)

    def votable(what: str) -> Callable[[Job, str], Response]:
        def make(job: Job, url: str) -> Response:
            body = job.error if what == "error" else job.result
            if body is None:
                raise VOQueryError(f"job {job.job_id} has no {what} (phase {job.phase})", 404)
            return Response(body, media_type="application/x-votable+xml")
        return make

    document("parameters", _XML, lambda job, url: _xml(parameters_xml(job)))
    document("results", _XML, lambda job, url: _xml(results_xml(job, url)))
    document("error", _VOTABLE, votable("error"))
    document("results/result", _VOTABLE, votable("result"))
