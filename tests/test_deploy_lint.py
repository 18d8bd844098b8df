"""The deploy files, checked the way CI can without a container engine or a cluster:

- the Dockerfile passes hadolint (``.hadolint.yaml``);
- compose.yaml passes the Compose specification's JSON schema (the copy check-jsonschema ships, with its licence);
- every Kubernetes overlay builds with ``kubectl kustomize`` and its output passes ``kubernetes-validate --strict``
  against Kubernetes 1.33, with the drain, GPU, probe and autoscaling settings the README promises;
- every YAML file passes yamllint (``.yamllint``); the image's lock pins everything pyproject asks for.

Each linter is also shown a file it must refuse, so a linter that checks nothing cannot pass these tests.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_tools import COMPOSE, ENV_EXAMPLE, KUBERNETES, KUBERNETES_VERSION, ROOT, compose_project, read_env_file
from deploy_tools import tool as find_tool
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

OVERLAYS = sorted(p.name for p in (KUBERNETES / "overlays").iterdir() if p.is_dir())
CUSTOM_KINDS = {"ScaledObject", "ServiceMonitor"}  # CRDs (KEDA, Prometheus Operator): no schema in the validator


def run(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=120)


# -- Dockerfile ----------------------------------------------------------------------------------------------------
def test_the_dockerfile_passes_hadolint(tmp_path):
    hadolint = find_tool("hadolint")
    result = run(hadolint, "--config", ROOT / ".hadolint.yaml", ROOT / "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr
    careless = tmp_path / "Dockerfile"
    careless.write_text("FROM ubuntu\nRUN apt-get install curl\n")
    refused = run(hadolint, "--config", ROOT / ".hadolint.yaml", careless)
    assert refused.returncode != 0 and "DL3006" in refused.stdout and "DL3014" in refused.stdout


def test_the_image_runs_as_a_user_with_pixgen_as_its_entrypoint_and_no_weights_inside():
    text = (ROOT / "Dockerfile").read_text()
    final = text[text.rindex("\nFROM "):]  # the image's own stage
    assert "\nUSER 10001:10001" in final and 'ENTRYPOINT ["pixgen"]' in final and "HEALTHCHECK" in final
    assert "deploy/install.sh" in text  # the one recipe CI runs too
    allowed = [line[1:] for line in (ROOT / ".dockerignore").read_text().splitlines() if line.startswith("!")]
    assert not any("model" in path or path.startswith("data") for path in allowed), allowed  # nothing to bake


# -- compose.yaml --------------------------------------------------------------------------------------------------
def test_compose_yaml_matches_the_compose_specification(tmp_path):
    checker = find_tool("check-jsonschema")
    result = run(checker, "--builtin-schema", "vendor.compose-spec", COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr
    misspelt = tmp_path / "compose.yaml"
    misspelt.write_text(COMPOSE.read_text().replace("command: [serve", "comand: [serve"))
    refused = run(checker, "--builtin-schema", "vendor.compose-spec", misspelt)
    assert refused.returncode != 0 and "comand" in refused.stdout


def test_compose_gives_gpu_workers_a_device_each_and_time_to_drain():
    env = read_env_file(ENV_EXAMPLE)
    services = compose_project(env)["services"]
    worker = services["worker-gpu0"]
    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"] and device["device_ids"] == ["0"]
    assert worker["profiles"] == ["gpu"] and services["worker-cpu"]["profiles"] == ["cpu"]
    assert _volume(worker["volumes"][0]) == {"source": "./models", "target": "/models", "read_only": True}
    drain = float(worker["environment"]["PIXGEN_DRAIN_SECONDS"])
    assert _seconds(worker["stop_grace_period"]) >= drain + 30  # docker's SIGKILL never lands on a drain
    assert services["api"]["command"] == ["serve", "--workers", "0"]
    assert services["api"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def _volume(spec: str) -> dict[str, Any]:
    source, target, *mode = spec.split(":")
    return {"source": source, "target": target, "read_only": mode == ["ro"]}


def _seconds(duration: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1}
    return float(duration[:-1]) * units[duration[-1]]


# -- Kubernetes ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, tuple[Path, list[dict[str, Any]]]]:
    """Each overlay built by ``kubectl kustomize`` as an operator would: in a copy whose secrets.env is made from
    its example. {overlay: (the built file, its resources)}."""
    kubectl = find_tool("kubectl")
    tree = tmp_path_factory.mktemp("kubernetes") / "kubernetes"
    shutil.copytree(KUBERNETES, tree)
    for example in tree.rglob("secrets.env.example"):
        shutil.copy(example, example.with_suffix(""))
    out = {}
    for overlay in OVERLAYS:
        result = run(kubectl, "kustomize", tree / "overlays" / overlay)
        assert result.returncode == 0, f"{overlay}: {result.stderr}"
        path = tree / f"{overlay}.yaml"
        path.write_text(result.stdout)
        out[overlay] = (path, [doc for doc in yaml.safe_load_all(result.stdout) if doc])
    return out


def by_kind(resources: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {r["metadata"]["name"]: r for r in resources if r["kind"] == kind}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_overlay_passes_kubernetes_validate(built, overlay):
    path, resources = built[overlay]
    result = run(find_tool("kubernetes-validate"), "--strict", "--kubernetes-version", KUBERNETES_VERSION, path)
    assert result.returncode == 0, result.stdout + result.stderr
    passed = result.stdout.count("passed for resource") + result.stderr.count("passed for resource")
    custom = [r for r in resources if r["kind"] in CUSTOM_KINDS]
    assert passed == len(resources) - len(custom), result.stdout + result.stderr  # every built-in kind checked
    assert all(r["metadata"].get("namespace") == "pixgen" for r in resources if r["kind"] != "Namespace")


def test_kubernetes_validate_refuses_a_wrong_manifest(built, tmp_path):
    path, _ = built["production"]
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(path.read_text().replace("terminationGracePeriodSeconds: 660", "terminationGracePeriod: 660"))
    result = run(find_tool("kubernetes-validate"), "--strict", "--kubernetes-version", KUBERNETES_VERSION, wrong)
    assert result.returncode != 0 and "terminationGracePeriod" in result.stdout + result.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_reference_in_an_overlay_names_a_resource_it_makes(built, overlay):
    """Secrets, config maps and claims the pods use exist under those exact names (kustomize renames generated
    ones; a reference it did not rename would leave pods stuck at start)."""
    _, resources = built[overlay]
    names = {(r["kind"], r["metadata"]["name"]) for r in resources}
    for deployment in by_kind(resources, "Deployment").values():
        spec = deployment["spec"]["template"]["spec"]
        for container in spec["containers"]:
            for source in container.get("envFrom", ()):
                kind, ref = ("Secret", source["secretRef"]) if "secretRef" in source else ("ConfigMap",
                                                                                        source["configMapRef"])
                assert (kind, ref["name"]) in names, (deployment["metadata"]["name"], kind, ref["name"])
        for volume in spec.get("volumes", ()):
            if "persistentVolumeClaim" in volume:
                assert ("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]) in names
    for monitor in by_kind(resources, "ServiceMonitor").values():
        credentials = monitor["spec"]["endpoints"][0]["authorization"]["credentials"]
        assert ("Secret", credentials["name"]) in names


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_workers_get_a_gpu_the_model_read_only_and_a_grace_period_past_their_drain(built, overlay):
    _, resources = built[overlay]
    worker = by_kind(resources, "Deployment")["pixgen-worker"]["spec"]["template"]["spec"]
    (container,) = worker["containers"]
    assert container["args"] == ["worker"] and container["resources"]["limits"]["nvidia.com/gpu"] == 1
    models = next(v for v in worker["volumes"] if v["name"] == "models")
    assert models["persistentVolumeClaim"]["readOnly"] is True
    assert next(m for m in container["volumeMounts"] if m["name"] == "models")["readOnly"] is True
    (settings,) = by_kind(resources, "ConfigMap").values()
    drain = float(settings["data"]["PIXGEN_DRAIN_SECONDS"])
    assert worker["terminationGracePeriodSeconds"] >= drain + 30
    api = by_kind(resources, "Deployment")["pixgen-api"]["spec"]["template"]["spec"]["containers"][0]
    assert api["readinessProbe"]["httpGet"]["path"] == "/health/ready?workers=0"
    assert set(by_kind(resources, "PodDisruptionBudget")) == {"pixgen-api", "pixgen-worker"}


def test_the_keda_overlay_scales_workers_to_zero_on_the_queue_gauges(built):
    _, resources = built["keda"]
    (scaled,) = by_kind(resources, "ScaledObject").values()
    assert scaled["spec"]["scaleTargetRef"]["name"] == "pixgen-worker" and scaled["spec"]["minReplicaCount"] == 0
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    assert "pixgen_queue_pending_jobs" in trigger["metadata"]["query"]
    assert "pixgen_queue_processing_jobs" in trigger["metadata"]["query"]
    assert "replicas" not in by_kind(resources, "Deployment")["pixgen-worker"]["spec"]  # the autoscaler owns it
    _, fixed = built["production"]
    assert by_kind(fixed, "Deployment")["pixgen-worker"]["spec"]["replicas"] >= 1


def test_the_queue_gauges_keda_reads_are_the_ones_metrics_serves():
    """The query names pixgen's own gauges; a rename in api/metrics.py must not silently stop the autoscaler."""
    source = (ROOT / "src" / "pixgen" / "api" / "metrics.py").read_text()
    query = yaml.safe_load((KUBERNETES / "overlays" / "keda" / "scaledobject.yaml").read_text())
    text = query["spec"]["triggers"][0]["metadata"]["query"]
    for gauge in ("pixgen_queue_pending_jobs", "pixgen_queue_processing_jobs"):
        assert gauge in text and f'"{gauge}"' in source


# -- YAML, lock ----------------------------------------------------------------------------------------------------
def test_every_yaml_file_passes_yamllint(tmp_path):
    yamllint = find_tool("yamllint")
    files = [COMPOSE, ROOT / ".yamllint", ROOT / ".hadolint.yaml", *sorted(KUBERNETES.rglob("*.yaml"))]
    result = run(yamllint, "--strict", "--config-file", ROOT / ".yamllint", *files)
    assert result.returncode == 0, result.stdout + result.stderr
    sloppy = tmp_path / "sloppy.yaml"
    sloppy.write_text("a: 1\na: 2\n")
    refused = run(yamllint, "--strict", "--config-file", ROOT / ".yamllint", sloppy)
    assert refused.returncode != 0 and "duplication of key" in refused.stdout


def test_the_image_lock_pins_every_dependency_pyproject_asks_for():
    import tomllib

    lock = {}
    for line in (ROOT / "deploy" / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            lock[canonicalize_name(name)] = version
    wanted = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for text in wanted:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        if name == "torch":  # installed by deploy/install.sh itself, CUDA or CPU build
            assert str(requirement.specifier) == "==2.13.0"
            assert "torch==2.13.0" in (ROOT / "deploy" / "install.sh").read_text()
            continue
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        assert name in lock, f"{name} is missing from deploy/requirements.lock: run deploy/lock.sh"
        assert requirement.specifier.contains(lock[name], prereleases=True), (
            f"deploy/requirements.lock pins {name}=={lock[name]}, pyproject asks {requirement.specifier}: "
            "run deploy/lock.sh")
