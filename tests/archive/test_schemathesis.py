"""schemathesis over the archive's whole OpenAPI schema, against a live server on 127.0.0.1.

The server (uvicorn in a thread) holds public and proprietary products,
and previews, on SQLite and PostgreSQL.  Every operation
is run through schemathesis' examples, coverage and fuzzing phases with
every check (``--checks all``): no server error, no undocumented status,
content type or header, responses matching their schema, schema-valid
requests accepted and invalid ones refused.  Requests go out anonymously
and as a member of the proprietary program (its bearer token).

Path parameters are drawn from the real product ids as well
as from generated ones, so downloads (with generated ``Range`` headers),
previews and diffs of existing products are exercised too.

The VO parameters (``POS``, ``QUERY``, DataLink's ``ID``, ...) are a query language
or identifiers that JSON
Schema cannot describe, and ``/api/search`` and the web ``/search`` have
rules across parameters (``ra``/``dec``/``radius`` together, ``t_min <=
t_max``; the page also refuses text with NUL): for those operations a
documented 400 also counts as an answer to schema-valid data.
A download whose generated Range lies past the end answers the documented
416, also an answer to valid data.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.core.parameters import ParameterLocation
from tests.archive.conftest import live_site, make_archive
from tests.archive.factories import meta, write_light_curve, write_product

from obsflow.archive import vo, web
from obsflow.archive.api import ApiSettings, create_app
from obsflow.archive.context import Archive
from obsflow.archive.register import register_product
from obsflow.models.identity import ProductRef
from obsflow.models.provenance import Provenance

NOW = datetime(2026, 6, 1)  # program 01234's data (12 months) is still proprietary
MAX_EXAMPLES = 6
"""Fuzzed cases per operation (and per viewer): bounded to keep the run short."""

_ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429"]
_CONFIG = {
    "generation": {"max-examples": MAX_EXAMPLES},
    "checks": {"positive_data_acceptance": {"expected-statuses": _ACCEPTED}},
    "operations": [
        {"include-path-regex": "^/vo/.*(query|sync|links)$",
         "checks": {"positive_data_acceptance": {"expected-statuses": [*_ACCEPTED, "400"]}}},
        {"include-path-regex": "^/(api/)?search$",
         "checks": {"positive_data_acceptance": {"expected-statuses": [*_ACCEPTED, "400"]}}},
        {"include-path": "/api/products/{product_id}/download",
         "generation": {"max-examples": 5 * MAX_EXAMPLES},  # Range headers on real files
         "checks": {"positive_data_acceptance": {"expected-statuses": [*_ACCEPTED, "416"]}}},
    ],
}

IDS: dict[str, list[Any]] = {}
"""Real ids of the live site: ``product_id`` (filled by the fixture)."""


@pytest.fixture(scope="module")
def live(module_db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(base URL, alice's token) of a live archive with public and proprietary data."""
    folder = tmp_path_factory.mktemp("st")
    with live_site(module_db_url, folder, ApiSettings(clock=lambda: NOW, bad_token_limit=10**6),
                   routers=[*vo.routers(), *web.routers()]) as live:
        IDS.update(product_id=_register(live.archive, folder / "in"))
        IDS["other_product_id"] = IDS["product_id"]
        yield live.url, live.tokens["alice"]


def _register(archive: Archive, folder: Path) -> list[str]:
    """Public and proprietary images in three filters, a ramp and a light curve: their ids."""
    public = {"program": "03456", "ra_v1": 80.49, "dec_v1": -69.5, "target": "CAL-FIELD"}
    ids = []
    for n, band in enumerate("JHK", start=1):
        for fields in (public, {}):  # three filters each, public and proprietary
            path = write_product(folder, meta(**fields, filter=band, exposure=n), seed=n)
            ids.append(register_product(archive, path).product_id)
    ramp = write_product(folder, meta(program="05678", exposure=4), kind="uncal")
    ramp_record = register_product(archive, ramp)
    ids.append(ramp_record.product_id)
    source = ProductRef("uncal", meta(program="05678", exposure=4).data_id, ramp_record.run,
                        ramp_record.uuid)
    lightcurve = write_light_curve(folder, ProductRef("phot", source.data_id, "prompt"),
                                   Provenance("prompt", "0.3.0", inputs=(source,)))
    ids.append(register_product(archive, lightcurve).product_id)  # ECSV: text/x-ecsv downloads
    return ids


def _schema(phases: list[str]) -> Any:
    """The schema of the app the live server runs (made from the code; no data involved),
    tested in ``phases``."""
    folder = Path(tempfile.mkdtemp(prefix="obsflow-st-"))
    archive = make_archive(f"sqlite:///{folder / 'schema.db'}", folder / "store")
    try:
        document = create_app(archive, routers=[*vo.routers(), *web.routers()]).openapi()
    finally:
        archive.close()
        shutil.rmtree(folder)
    config = {**_CONFIG, "phases": {name: {"enabled": name in phases}
                                    for name in ("examples", "coverage", "fuzzing", "stateful")}}
    return schemathesis.openapi.from_dict(document, config=SchemathesisConfig.from_dict(config))


schema = _schema(["examples", "coverage", "fuzzing"])
"""Anonymous requests: the schema's examples, its boundary cases (coverage) and fuzzing."""

member_schema = _schema(["fuzzing"])
"""Requests as a member of the proprietary program: fuzzing (the boundaries do not depend
on who asks)."""


MAX_URL = 8192
"""Longest request URL sent: uvicorn's HTTP parser (h11) drops a request head over 16 KiB
before the app sees it, so longer generated GET requests test the HTTP library, not obsflow."""


@schema.hook
@member_schema.hook
def filter_case(context: Any, case: Any) -> bool:
    """Only requests whose URL the HTTP server reads (see :data:`MAX_URL`)."""
    url = case.as_transport_kwargs(base_url="http://127.0.0.1:1")["url"]
    params = case.query or {}
    return len(url) + sum(len(str(k)) + len(str(v)) + 2 for k, v in params.items()) < MAX_URL


@schema.hook
@member_schema.hook
def flatmap_case(context: Any, case: Any) -> Any:
    """Valid path ids: the generated ones or real ones of the site (invalid ones are kept)."""
    params = case.path_parameters
    if not params or (case.meta is not None and case.meta.is_negative_at(ParameterLocation.PATH)):
        return st.just(case)
    choices = {name: st.sampled_from([value, *IDS.get(name, [])]) for name, value in params.items()}

    def with_ids(ids: dict[str, Any]) -> Any:
        case.path_parameters = ids
        return case

    return st.fixed_dictionaries(choices).map(with_ids)


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_schemathesis_anonymous(case: Any, live: tuple[str, str]) -> None:
    case.call_and_validate(base_url=live[0], timeout=30)


@member_schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_schemathesis_member(case: Any, live: tuple[str, str]) -> None:
    case.call_and_validate(base_url=live[0], headers={"Authorization": f"Bearer {live[1]}"},
                           timeout=30)
