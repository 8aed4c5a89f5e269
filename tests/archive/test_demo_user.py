"""The demo's archive user: a member of every program, its password printed, reset on re-run."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from obsflow.archive.context import Archive
from obsflow.archive.register import register_program
from obsflow.archive.users import login, viewer_for_secret
from obsflow.demo import DEMO_USER, demo_user
from obsflow.exceptions import AuthenticationError
from obsflow.site import init_site


def test_demo_user_is_a_member_of_every_program_and_logs_in(tmp_path: Path) -> None:
    cfg = init_site(tmp_path / "site")
    for program, months in (("01234", 12), ("03456", 0)):
        register_program(cfg, program, exclusive_months=months)
    programs, password = demo_user(cfg)
    assert programs == ["01234", "03456"] and len(password) >= 16
    now = datetime(2026, 6, 1)
    with Archive.from_site(cfg) as arch, arch.session() as session, session.begin():
        secret = login(session, DEMO_USER, password, now=now)
        viewer = viewer_for_secret(session, secret, now=now)
    assert viewer.name == DEMO_USER and viewer.programs == frozenset(programs)
    _, again = demo_user(cfg)  # a re-run resets the password: the old one no longer works
    assert again != password
    with Archive.from_site(cfg) as arch, arch.session() as session, session.begin(), \
            pytest.raises(AuthenticationError):
        login(session, DEMO_USER, password, now=now)
