"""Users, roles and password hashing (hashlib.scrypt with a per-user salt).

A stored hash reads ``scrypt$n$r$p$<salt b64>$<hash b64>`` so the cost can be raised later
without breaking existing accounts. Comparison is constant-time, and an unknown user costs
the same work as a wrong password, so timing tells nothing about which usernames exist.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from enum import StrEnum

from sqlmodel import Session, select

from priorwatch.models import User


class Role(StrEnum):
    radiologist = "radiologist"
    qa = "qa"
    admin = "admin"


SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
KEY_BYTES = 32
MIN_PASSWORD_LEN = 8
USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


class AuthError(ValueError):
    """A user could not be created (bad username, role or password, or a duplicate)."""


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else os.urandom(SALT_BYTES)
    key = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=KEY_BYTES
    )
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt_b64, key_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        salt = base64.b64decode(salt_b64)
        expected = base64.b64decode(key_b64)
        key = hashlib.scrypt(
            password.encode("utf-8"),
            salt=salt,
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
            maxmem=256 * 1024 * 1024,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(key, expected)


# A hash to verify against when the user does not exist (same cost, always false).
_DUMMY_HASH = hash_password("not-a-real-password", salt=b"\x00" * SALT_BYTES)


def create_user(session: Session, username: str, password: str, role: str = Role.radiologist) -> User:
    username = username.strip()
    if not USERNAME_RE.match(username):
        raise AuthError(
            "username must be 1-64 characters: letters, digits and . _ @ - (starting with a letter or digit)"
        )
    try:
        role = Role(role).value
    except ValueError:
        raise AuthError(f"role must be one of: {', '.join(r.value for r in Role)}") from None
    if len(password) < MIN_PASSWORD_LEN:
        raise AuthError(f"password must be at least {MIN_PASSWORD_LEN} characters")
    if session.exec(select(User).where(User.username == username)).first() is not None:
        raise AuthError(f"user {username!r} already exists")
    user = User(username=username, password_hash=hash_password(password), role=role)
    session.add(user)
    session.flush()
    return user


def set_password(session: Session, username: str, password: str) -> User:
    user = session.exec(select(User).where(User.username == username)).first()
    if user is None:
        raise AuthError(f"no user {username!r}")
    if len(password) < MIN_PASSWORD_LEN:
        raise AuthError(f"password must be at least {MIN_PASSWORD_LEN} characters")
    user.password_hash = hash_password(password)
    session.add(user)
    return user


def authenticate(session: Session, username: str, password: str) -> User | None:
    """The user if the password matches, else None (same work either way)."""
    user = session.exec(select(User).where(User.username == username.strip())).first()
    ok = verify_password(password, user.password_hash if user else _DUMMY_HASH)
    return user if (user is not None and ok) else None


def user_count(session: Session) -> int:
    return len(session.exec(select(User.id)).all())
