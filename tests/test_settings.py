"""Settings: defaults, PIXGEN_* variables, flags over variables, the signing secret kept per data folder."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from pixgen.errors import ConfigError
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


def test_bad_value_is_a_configuration_error_naming_the_setting_where_it_came_from(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_settings({"data_dir": str(tmp_path)}, environ={"PIXGEN_PORT": "eighty"})
    assert err.value.field == "port" and err.value.message.startswith("PIXGEN_PORT='eighty': ")
    with pytest.raises(ConfigError) as err:
        load_settings({"data_dir": str(tmp_path), "lease_seconds": "0"}, environ={"PIXGEN_LEASE_SECONDS": "9"})
    assert err.value.field == "lease_seconds" and err.value.message.startswith("--lease-seconds '0': ")
    with pytest.raises(ConfigError):
        Settings(data_dir=tmp_path, workers=-1)
    with pytest.raises(ConfigError) as err:
        load_settings({"data_dir": str(tmp_path)}, environ={"PIXGEN_PRICES": "1080p"})
    assert err.value.field == "prices"


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


def test_every_setting_is_declared_once_with_its_flag_variable_default_and_help():
    from pixgen.settings import DB_FLAGS, env_name, flag_name

    parser = argparse.ArgumentParser()
    add_arguments(parser, API_FLAGS + SERVICE_FLAGS)
    helps = {a.dest: a.help for a in parser._actions if a.dest != "help"}
    assert set(helps) == set(Settings.model_fields)  # serve takes every setting as a flag
    for name, field in Settings.model_fields.items():
        assert field.description and helps[name].endswith(f"[{env_name(name)}]"), name
        assert flag_name(name) in parser._option_string_actions
    assert set(DB_FLAGS) == {"data_dir", "database_url"}
    assert not set(API_FLAGS) & set(SERVICE_FLAGS)


def test_pixgen_variables_reach_the_settings_from_the_process_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PIXGEN_MAX_ATTEMPTS", "7")
    monkeypatch.setenv("PIXGEN_DATA_DIR", str(tmp_path))
    s = load_settings()
    assert s.max_attempts == 7 and s.database_url == f"sqlite:///{tmp_path / 'pixgen.db'}"
    assert load_settings({"max_attempts": "2"}).max_attempts == 2


def test_the_error_tree_drawn_in_errors_py_lists_every_error_with_its_code_and_status():
    import inspect

    import pixgen.errors as errors

    drawn = errors.__doc__
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, errors.PixgenError)]
    assert len(classes) >= 15
    for cls in classes:
        line = next((ln for ln in drawn.splitlines() if ln.strip(" │├└─").startswith(cls.__name__ + " ")), None)
        assert line is not None, f"{cls.__name__} is not drawn in the tree"
        assert f" {cls.code} " in line and f" {cls.status}" in line, (cls.__name__, line)
