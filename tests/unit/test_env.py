"""The pgpool2_on_k8s image's environment conventions, read once into one ImageEnv."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgpoolsync.core.model import Credential
from pgpoolsync.settings import UsageError, parse
from pgpoolsync.sources import env


def test_the_image_s_variables_and_mounts_become_one_value(tmp_path: Path) -> None:
    (tmp_path / "pool_hba.conf").write_text("local all all trust\n")
    (tmp_path / "tls").mkdir()
    (tmp_path / "tls" / "tls.crt").write_text("c")
    (tmp_path / "tls" / "tls.key").write_text("k")
    image = env.read(
        {
            "PGPOOL_CONF_VOLUME": str(tmp_path),
            "PGPOOL_PASSWORD_ENCRYPTION_METHOD": "md5",
            "PGPOOL_INSTALL_DIR": "/opt/pgpool-II/",
            "PGPOOLKEYFILE": "/keys/k",
            "PGPOOL_PCP_USER": "pcp",
            "PGPOOL_PCP_PASSWORD": "pcp-secret",
            "POD_NAME": "pgpool-0",
            "PGPOOL_PARAMS_PORT": "5432",
            "PGPOOL_PARAMS_SR_CHECK_PASSWORD": "sr-secret",
            "APP_USERNAME": "app",
            "APP_PASSWORD": "app-secret",
            "PGPOOL_ENABLE_POOL_PASSWD": "false",
        }
    )
    assert image.default_format == "md5" and image.default_auth_method == "md5"
    assert image.default_config_dir == "/opt/pgpool-II/etc"
    assert image.mounted_hba == tmp_path / "pool_hba.conf"
    assert image.mounted_tls == tmp_path / "tls"
    assert (image.key_file, image.pcp_user, image.pod_name) == ("/keys/k", "pcp", "pgpool-0")
    assert [(p.name, p.value) for p in image.params] == [
        ("port", "5432"),
        ("sr_check_password", "sr-secret"),
    ]
    [cred] = image.credentials
    assert isinstance(cred, Credential) and (cred.user, cred.password) == ("app", "app-secret")
    assert image.pool_passwd is False
    assert "secret" not in repr(image)


def test_without_the_image_s_variables_the_defaults_are_those_of_a_plain_install() -> None:
    image = env.read({"PGPOOL_CONF_VOLUME": "/nonexistent-volume"})
    assert image.default_format == "aes" and image.default_auth_method == "scram-sha-256"
    assert image.default_config_dir == "/etc/pgpool"
    assert image.mounted_hba is None and image.mounted_tls is None
    assert image.params == () and image.credentials == () and image.pool_passwd is True


def test_skip_password_encryption_makes_the_entries_verbatim() -> None:
    assert env.read({"PGPOOL_SKIP_PASSWORD_ENCRYPTION": "true"}).default_format == "verbatim"


def test_a_bad_encryption_method_is_kept_as_an_error_naming_the_variable() -> None:
    image = env.read({"PGPOOL_PASSWORD_ENCRYPTION_METHOD": "sha1"})
    assert len(image.flag_errors) == 1
    assert "PGPOOL_PASSWORD_ENCRYPTION_METHOD='sha1'" in image.flag_errors[0]


AMBIGUOUS = {"PGPOOL_PARAMS_PORT": "1", "PGPOOL_PARAMS_Port": "2"}


def test_an_ambiguous_parameter_is_refused_by_the_commands_that_read_parameters() -> None:
    assert "both set port" in env.read(AMBIGUOUS).param_errors[0]
    with pytest.raises(UsageError, match="both set port"):
        parse(["render"], AMBIGUOUS)


def test_an_ambiguous_parameter_does_not_stop_the_exporter() -> None:
    settings = parse(["exporter"], {**AMBIGUOUS, "DATA_SOURCE_PASS": "x"})
    assert settings.command == "exporter" and settings.exporter is not None
