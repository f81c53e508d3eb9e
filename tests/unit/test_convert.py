"""Converting raw source objects (Secret data) into model values."""

from __future__ import annotations

import pytest

from pgpoolsync.core.model import Credential, Problem
from pgpoolsync.sources import convert
from tests.origins import src


def test_credential_from_data_takes_the_role_from_the_data() -> None:
    cred = convert.credential_from_data(src("secret ns/x"), {"user": b"app", "password": b"pw"})
    assert cred == Credential("app", "pw", src("secret ns/x"))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"password": b"pw"}, "no user name key"),
        ({"username": b"u"}, "no password key"),
        ({"username": b"u", "password": b"\xff\xfe"}, "not valid UTF-8"),
    ],
)
def test_credential_from_data_reports_missing_or_undecodable_keys(
    data: dict[str, bytes], message: str
) -> None:
    result = convert.credential_from_data(src("secret ns/x"), data)
    assert isinstance(result, Problem)
    assert str(result.source) == "secret ns/x"
    assert message in result.message
