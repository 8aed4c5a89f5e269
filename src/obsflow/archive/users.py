"""Users, program membership, API tokens and web sessions.

Tokens are random (``obf_`` + 43 URL-safe characters, 256 bits), shown once
and stored only as their sha256.  A web session is the same kind of row with
``kind='session'`` and a short life: the web UI's login form calls
:func:`login` and puts the returned secret in the :data:`SESSION_COOKIE`
cookie; the API accepts either ``Authorization: Bearer <token>`` or that
cookie (see :func:`viewer_for_secret`).  Passwords are hashed with scrypt.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from obsflow.archive.policy import ANONYMOUS, Viewer, utcnow
from obsflow.archive.schema import ApiToken, Program, ProgramMember, User
from obsflow.exceptions import ArchiveError, AuthenticationError

__all__ = [
    "SESSION_COOKIE",
    "SESSION_HOURS",
    "TOKEN_PATTERN",
    "add_member",
    "add_user",
    "create_token",
    "get_user",
    "hash_token",
    "login",
    "logout",
    "verify_password",
    "viewer_for_secret",
    "viewer_for_user",
]

SESSION_COOKIE = "obsflow_session"
"""Name of the cookie holding a web session secret."""

SESSION_HOURS = 12
"""Lifetime of a web session, hours."""

TOKEN_PATTERN = re.compile(r"^obf_[A-Za-z0-9_-]{43}$")
"""Shape of every token and session secret; anything else is malformed."""

_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def hash_token(secret: str) -> str:
    """sha256 hex of a token (what the database stores)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def _hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)
    return "scrypt$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(key).decode()


def verify_password(stored: str | None, password: str) -> bool:
    """True if ``password`` matches a hash made by :func:`add_user`."""
    if not stored or stored.count("$") != 2:
        return False
    _, salt, key = stored.split("$")
    found = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), **_SCRYPT)
    return hmac.compare_digest(found, base64.b64decode(key))


def get_user(session: Session, name: str) -> User:
    """The user called ``name``; :class:`ArchiveError` if there is none."""
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        raise ArchiveError(f"no user {name!r}; create one with `obsflow users add {name}`")
    return user


def add_user(session: Session, name: str, *, admin: bool = False,
             password: str | None = None) -> User:
    """Create a user (or update admin flag / password of an existing one)."""
    if not _NAME.match(name):
        raise ArchiveError(f"invalid user name {name!r}: 1-64 of A-Z a-z 0-9 _ . @ -")
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        user = User(name=name, is_admin=admin, created=utcnow())
        session.add(user)
    user.is_admin = admin or user.is_admin
    if password is not None:
        user.password_hash = _hash_password(password)
    session.flush()
    return user


def add_member(session: Session, program: str, user_name: str) -> None:
    """Make ``user_name`` a member of ``program`` (idempotent)."""
    user = get_user(session, user_name)
    if session.get(Program, program) is None:
        raise ArchiveError(f"no program {program!r}; add it with `obsflow archive program add`")
    if session.get(ProgramMember, (program, user.id)) is None:
        session.add(ProgramMember(program=program, user_id=user.id))
        session.flush()


def create_token(session: Session, user_name: str, *, days: float | None = None,
                 label: str = "", kind: str = "api", now: datetime | None = None) -> str:
    """Create a token for ``user_name`` and return its secret (shown only this once)."""
    user = get_user(session, user_name)
    now = now or utcnow()
    secret = "obf_" + secrets.token_urlsafe(32)
    expires = now + timedelta(days=days) if days is not None else None
    session.add(ApiToken(user_id=user.id, token_hash=hash_token(secret), kind=kind,
                         label=label, created=now, expires=expires))
    session.flush()
    return secret


def login(session: Session, name: str, password: str, *, now: datetime | None = None) -> str:
    """Check a password and open a web session; returns the cookie secret.

    Raises :class:`AuthenticationError` (same message for an unknown user
    and a wrong password).
    """
    user = None if "\x00" in name else session.scalar(select(User).where(User.name == name))
    if user is None or not verify_password(user.password_hash, password):
        raise AuthenticationError("wrong user name or password")
    return create_token(session, name, days=SESSION_HOURS / 24, kind="session",
                        label="web session", now=now)


def logout(session: Session, secret: str) -> None:
    """Close the web session (or revoke the token) ``secret``."""
    session.execute(delete(ApiToken).where(ApiToken.token_hash == hash_token(secret)))


def viewer_for_user(session: Session, user: User) -> Viewer:
    """The :class:`Viewer` of ``user`` with the programs they belong to."""
    programs = session.scalars(
        select(ProgramMember.program).where(ProgramMember.user_id == user.id)
    ).all()
    return Viewer(name=user.name, user_id=user.id, is_admin=user.is_admin,
                  programs=frozenset(programs))


def viewer_for_secret(session: Session, secret: str | None,
                      now: datetime | None = None) -> Viewer:
    """Resolve a token or session secret to a :class:`Viewer` (None -> anonymous).

    Raises
    ------
    AuthenticationError
        The secret is malformed, unknown or expired.
    """
    if secret is None:
        return ANONYMOUS
    if not TOKEN_PATTERN.match(secret):
        raise AuthenticationError("malformed token")
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(secret)))
    if row is None:
        raise AuthenticationError("unknown token")
    if row.expires is not None and row.expires <= (now or utcnow()):
        raise AuthenticationError("token expired")
    return viewer_for_user(session, row.user)
