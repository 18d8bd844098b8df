"""What the deploy tests share: the repository's paths, the linters they run (from the test environment, or failed
under CI when missing), and compose.yaml read as ``docker compose`` reads it."""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
KUBERNETES = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.33.0"  # the manifests are validated against this release (kubectl v1.33 builds them)


def tool(name: str) -> str:
    """The command ``name``: beside this interpreter (``make install`` puts the linters and kubectl there), else on
    PATH. Missing: skipped, or failed under CI, where ``make install`` must have provided it."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        message = f"{name} is not installed (make install provides it)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines, as compose reads an env file (comments and blank lines skipped)."""
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:-|:\?|-|\?)(?P<arg>[^}]*))?\}")


def interpolate(value: Any, variables: dict[str, str]) -> Any:
    """compose's ``${NAME}``, ``${NAME:-default}`` and ``${NAME:?error}`` in every string of ``value``."""
    if isinstance(value, dict):
        return {k: interpolate(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, variables) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        current = variables.get(name)
        if op in (":-", "-"):
            return current if current or (op == "-" and current is not None) else arg
        if op in (":?", "?") and not current:
            raise AssertionError(f"compose would stop: {name}: {arg}")
        return current or ""

    return _VARIABLE.sub(one, value)


def compose_project(env: dict[str, str]) -> dict[str, Any]:
    """compose.yaml with its anchors merged and its variables filled from ``env`` (what ``.env`` holds)."""
    return interpolate(yaml.safe_load(COMPOSE.read_text()), env)


def service_environment(project: dict[str, Any], name: str, env_file: dict[str, str]) -> dict[str, str]:
    """A service's environment as its container gets it: its ``env_file`` (``.env``), then ``environment``."""
    service = project["services"][name]
    values = dict(env_file) if service.get("env_file") else {}
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    values.update({k: str(v) for k, v in environment.items()})
    return values
