"""The settings object: defaults, validation with one-line messages, secrets that never print."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from webtraffic.errors import SettingsError
from webtraffic.settings import Secret, Settings


def test_local_defaults(tmp_path):
    s = Settings.from_env({"WEBTRAFFIC_STATE_DIR": str(tmp_path)})
    assert s.profile == "local"
    assert s.kafka.bootstrap_servers == "127.0.0.1:19092"
    assert s.kafka.topic == "web.events"
    assert s.kafka.partitions == 3
    assert s.catalog_db == tmp_path / "catalog" / "catalog.db"
    assert s.jars_dir == tmp_path / "jars"
    assert s.checkpoint_root == str(tmp_path / "checkpoints")
    assert s.kafka.client_config() == {"bootstrap.servers": "127.0.0.1:19092"}


def test_default_state_folder_is_in_the_project():
    s = Settings.from_env({})
    assert s.state_dir == Path(__file__).resolve().parents[2] / ".state"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WEBTRAFFIC_PROFILE": "prod"}, "WEBTRAFFIC_PROFILE must be one of local, databricks"),
        ({"WEBTRAFFIC_KAFKA_PORT": "abc"}, "WEBTRAFFIC_KAFKA_PORT must be an integer"),
        ({"WEBTRAFFIC_KAFKA_PORT": "70000"}, "between 1 and 65535"),
        (
            {"WEBTRAFFIC_KAFKA_PORT": "9000", "WEBTRAFFIC_KAFKA_CONTROLLER_PORT": "9000"},
            "must differ",
        ),
        ({"WEBTRAFFIC_PROFILE": "databricks"}, "needs WEBTRAFFIC_KAFKA_BOOTSTRAP"),
        (
            {"WEBTRAFFIC_PROFILE": "databricks", "WEBTRAFFIC_KAFKA_BOOTSTRAP": "k:9092"},
            "needs WEBTRAFFIC_CHECKPOINT_ROOT",
        ),
    ],
)
def test_bad_values_are_one_clear_line(env, message):
    with pytest.raises(SettingsError, match=message) as excinfo:
        Settings.from_env(env)
    assert "\n" not in str(excinfo.value)


def test_databricks_profile_uses_sasl_and_never_shows_the_password():
    password = secrets.token_urlsafe(24)
    s = Settings.from_env(
        {
            "WEBTRAFFIC_PROFILE": "databricks",
            "WEBTRAFFIC_KAFKA_BOOTSTRAP": "pkc-1.example.cloud:9092",
            "WEBTRAFFIC_KAFKA_SASL_USERNAME": "api-key",
            "WEBTRAFFIC_KAFKA_SASL_PASSWORD": password,
            "WEBTRAFFIC_CHECKPOINT_ROOT": "/Volumes/main/webtraffic/checkpoints",
            "WEBTRAFFIC_CATALOG": "main",
        }
    )
    assert s.kafka.security_protocol == "SASL_SSL"
    config = s.kafka.client_config()
    assert config["sasl.username"] == "api-key"
    assert config["sasl.password"] == password
    assert password in s.kafka.spark_options()["kafka.sasl.jaas.config"]
    # Neither the settings nor the secret print the credential.
    assert password not in repr(s)
    assert password not in str(s.kafka)
    assert password not in f"{Secret(password)}"
    assert s.catalog_name == "main"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, "30 seconds"),
        ("", "30 seconds"),
        ("2 minutes", "2 minutes"),
        (" 90  SECONDS ", "90 seconds"),
        ("1 minute 30 seconds", "1 minute 30 seconds"),
        ("500 milliseconds", "500 milliseconds"),
        ("1 hour", "1 hour"),
    ],
)
def test_gold_watermark_setting(raw, expected):
    env = {} if raw is None else {"WEBTRAFFIC_GOLD_WATERMARK": raw}
    assert Settings.from_env(env).gold_watermark == expected


@pytest.mark.parametrize(
    "raw", ["0 seconds", "-1 seconds", "30", "30s", "30 secs", "thirty seconds", "1.5 minutes",
            "2 fortnights", "seconds 30", "1 minute 30"],
)  # fmt: skip
def test_a_bad_gold_watermark_is_one_clear_line(raw):
    with pytest.raises(SettingsError, match="WEBTRAFFIC_GOLD_WATERMARK must be a positive") as e:
        Settings.from_env({"WEBTRAFFIC_GOLD_WATERMARK": raw})
    assert "\n" not in str(e.value)
    assert repr(raw) in str(e.value)
