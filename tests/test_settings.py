"""Settings: defaults, PIXGEN_* variables, flags over variables, the signing secret kept per data folder."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from pixgen.errors import InvalidRequest
from pixgen.settings import API_FLAGS, SERVICE_FLAGS, Settings, add_arguments, load_settings, settings_from_args


def test_defaults_follow_the_contract(tmp_path):
    s = load_settings({"data_dir": str(tmp_path)}, environ={})
    assert (s.host, s.port, s.model, s.workers) == ("127.0.0.1", 8000, "tiny", 1)
    assert s.database_url == f"sqlite:///{tmp_path / 'pixgen.db'}"
    assert (s.lease_seconds, s.max_attempts, s.max_body_bytes, s.price) == (60, 3, 25 * 1024 * 1024, 10)
    assert s.media_url_ttl == 24 * 3600 and not s.zero_data_retention


def test_environment_then_flags(tmp_path):
    env = {"PIXGEN_PORT": "9001", "PIXGEN_WORKERS": "3", "PIXGEN_ZERO_DATA_RETENTION": "true",
           "PIXGEN_PRICES": "1080p=20, 720p=12", "PIXGEN_DATA_DIR": str(tmp_path)}
    s = load_settings({"workers": "0"}, environ=env)
    assert (s.port, s.workers, s.zero_data_retention) == (9001, 0, True)
    assert (s.price_for("1080p"), s.price_for("720p"), s.price_for("360p")) == (20, 12, 10)


def test_bad_value_names_the_setting(tmp_path):
    with pytest.raises(InvalidRequest) as err:
        load_settings({"data_dir": str(tmp_path)}, environ={"PIXGEN_PORT": "eighty"})
    assert err.value.field == "port"
    with pytest.raises(InvalidRequest):
        Settings(data_dir=tmp_path, workers=-1)


def test_signing_secret_is_made_once_per_data_folder(tmp_path):
    first = load_settings({"data_dir": str(tmp_path)}, environ={}).signing_secret
    assert len(first) == 64 and load_settings({"data_dir": str(tmp_path)}, environ={}).signing_secret == first
    assert (tmp_path / "signing_secret").stat().st_mode & 0o077 == 0
    given = load_settings({"data_dir": str(tmp_path), "signing_secret": "s3cret"}, environ={})
    assert given.signing_secret == "s3cret"


def test_to_env_round_trips_for_worker_subprocesses(tmp_path):
    s = load_settings({"data_dir": str(tmp_path), "lease_seconds": "7.5", "prices": "540p=4"}, environ={})
    assert load_settings(environ=s.to_env()) == s


def test_cli_flags_parse_into_settings(tmp_path):
    parser = argparse.ArgumentParser()
    add_arguments(parser, API_FLAGS + SERVICE_FLAGS)
    args = parser.parse_args(["--port", "8123", "--data-dir", str(tmp_path), "--zero-data-retention",
                              "--database-url", "postgresql://u@h/db"])
    s = settings_from_args(args)
    assert (s.port, s.data_dir, s.zero_data_retention, s.database_url) == (8123, Path(tmp_path), True,
                                                                            "postgresql://u@h/db")
