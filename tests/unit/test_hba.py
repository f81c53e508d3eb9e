"""pool_hba.conf validation follows pgpool's parser."""

from __future__ import annotations

import pytest

from pgpoolsync.core import hba


@pytest.mark.parametrize(
    "line",
    [
        "local all all trust",
        "host all all 0.0.0.0/0 scram-sha-256",
        "host all all ::1/128 md5",
        "host all all all md5",
        "host all all samenet md5",
        'host db1,db2 "user one" 10.0.0.0/8 md5',
        "host all all 192.168.0.1 255.255.255.0 md5",
        "host all all .example.com reject",
        "host all all db.example.com password",
        "hostnossl all all all ldap ldapserver=ldap.example.com ldapprefix=cn=",
        "host all all 10.0.0.1/32 pam pamservice=pgpool",
    ],
)
def test_lines_pgpool_accepts_are_valid(line: str) -> None:
    assert hba.check_line(line, ssl=False) is None


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("hots all all all md5", "invalid connection type"),
        ("host", "end-of-line before database"),
        ("host all", "end-of-line before role"),
        ("host all all", "end-of-line before IP address"),
        ("host all all all", "end-of-line before authentication method"),
        ("host all all 10.0.0.0/33 md5", "invalid CIDR mask"),
        ("host all all 10.0.0.0/x md5", "invalid CIDR mask"),
        ("host all all db.example.com/8 md5", "host name and CIDR mask"),
        ("host all all 10.0.0.1 md5", "invalid IP mask"),
        ("host all all 10.0.0.1", "end-of-line before netmask"),
        ("host all all ::1 255.0.0.0 md5", "do not match"),
        ("host all all all sha1", "invalid authentication method"),
        ("host all all all md5 noequals", "name=value"),
        ("host all all a_b!c md5", "invalid IP address"),
        ('host "all all all md5', "unbalanced"),
        ("hostssl all all all md5", "SSL is disabled"),
        ("host all all all cert", "only supported on hostssl"),
    ],
)
def test_lines_pgpool_rejects_are_reported(line: str, message: str) -> None:
    error = hba.check_line(line, ssl=False)
    assert error is not None and message in error


def test_hostssl_is_valid_when_ssl_is_on() -> None:
    assert hba.check_line("hostssl all all all md5", ssl=True) is None


def test_validate_reports_line_numbers_and_skips_comments() -> None:
    text = "# comment\n\nlocal all all trust  # trailing\nhost all all all nope\n"
    assert hba.validate(text, ssl=False) == ['line 4: invalid authentication method "nope"']


@pytest.mark.parametrize("method", hba.AUTH_METHODS)
@pytest.mark.parametrize("tls", [False, True])
def test_default_rules_are_valid(method: str, tls: bool) -> None:
    text = "\n".join(hba.default_rules(auth_method=method, tls=tls))
    assert hba.validate(text, ssl=tls) == []
