"""Service settings, read in one place: command-line flags over ``PIXGEN_*`` environment variables over defaults.

Each setting is declared once, as a field of ``Settings`` (pydantic-settings): its type, default, help text and
the commands that take it. Its flag (``--data-dir``), its variable (``PIXGEN_DATA_DIR``) and the conversions come
from that one declaration. ``Settings`` is frozen and passed down; nothing else reads the environment.
``load_settings`` is the one way in; a value that cannot be used is a ``ConfigError`` naming the setting.
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import os
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.sources.utils import parse_env_vars

from pixgen.engine.base import Dtype, EngineOptions, GuidanceParallel, MemoryMode, SequenceExchange, StepCache
from pixgen.engine.warmup import parse_warmup
from pixgen.errors import ConfigError

DEFAULT_PRICE = 10  # credits per video, as the PixelDojo seed
ENV_PREFIX = "PIXGEN_"

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}  # a duration's unit (``--keep-jobs 30d``)

# Which commands take a setting as a flag: "service" (serve and worker), "api" (serve), "db" (every command that
# opens the database: serve, worker, keys, status, webhooks).
SERVICE, API, DB = "service", "api", "db"


def setting(default: Any, help: str, *scopes: str, **constraints: Any) -> Any:
    """One setting's declaration: default, help (shown by ``--help``) and the command scopes that take its flag."""
    return Field(default, description=help, json_schema_extra={"scopes": list(scopes)}, **constraints)


class _Environ(EnvSettingsSource):
    """``PIXGEN_*`` variables from a given mapping (``load_settings(environ=...)``) instead of ``os.environ``."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str)


_ENVIRON: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar("pixgen_environ", default=None)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="forbid", env_ignore_empty=True,
                                      validate_default=True)

    host: str = setting("127.0.0.1", "address to listen on (default 127.0.0.1)", API)
    port: int = setting(8000, "port to listen on (default 8000)", API, ge=0, le=65535)
    data_dir: Path = setting(Path("data"), "folder for the database, media and signing secret (default ./data)",
                             SERVICE, DB)
    database_url: str = setting("", "sqlite:///PATH or postgresql://USER@HOST/DB (default sqlite in the data folder)",
                                SERVICE, DB)
    engine: str = setting("ltx2", "model backend: ltx2 (default), or package.module:NAME naming another backend "
                                  "(the tests' pixgen.testing:FAKE_BACKEND: solid-colour videos)", SERVICE)
    model: str = setting("tiny", "tiny (the built-in toy LTX-2) or a diffusers-format LTX-2 folder", SERVICE)
    cache_dir: Path | None = setting(None, "where the toy model is built (default ~/.cache/pixgen)", SERVICE)
    device: str = setting("auto", "where the model runs: auto (the GPU if there is one), cpu, cuda or cuda:N "
                                  "(default auto)", SERVICE)
    dtype: Dtype = setting("auto", "weights and activations: auto (bfloat16 on a GPU, float32 on a CPU), bfloat16, "
                                   "float16, float32", SERVICE)
    memory: MemoryMode = setting("auto", "how much of the model stays on the GPU: auto (the most that fits), full, "
                                         "text-offload, fp8, offload, group-offload", SERVICE)
    compile: bool = setting(False, "torch.compile the transformer's repeated blocks (slow first job of a shape "
                                   "family, then faster)", SERVICE)
    attention_backend: str = setting("", "diffusers attention backend for the mask-free attentions, e.g. flash, "
                                         "_flash_3, sage (default: PyTorch's own)", SERVICE)
    step_cache: StepCache = setting("none", "reuse work across denoising steps (lossy): none or taylorseer",
                                    SERVICE)
    fp8_compute: bool = setting(False, "the transformer's matmuls in float8 with row-wise scales (NVIDIA compute "
                                       "capability 8.9+: Ada, Hopper, Blackwell; off until measured)", SERVICE)
    overlap: bool = setting(False, "decode the video and encode the MP4 at once, on two threads (off until "
                                   "measured)", SERVICE)
    overlap_jobs: bool = setting(False, "a worker starts its next job while the last one's video is decoded and "
                                        "encoded (LTX-2: in memory modes full, text-offload and fp8; off until "
                                        "measured)", SERVICE)
    warmup: str = setting("auto", "shapes a worker runs once at load so no job is the first of its shape: auto "
                                  "(on a GPU every quality at 5 s, on a CPU none), none, or QUALITY[/SECONDS[/RATIO]],"
                                  "... e.g. 720p,1080p/10", SERVICE)
    no_preview: bool = setting(False, "make no early draft of two-stage videos (by default one is made from stage 1 "
                                      "at half size while the final renders)", SERVICE)
    workers: int = setting(1, "worker processes to start next to the API (default 1; 0 = API only)", API, ge=0)
    gpus: str = setting("", "GPUs by nvidia-smi index, e.g. 0,1: serve's workers take them in turn (default: those "
                            "CUDA_VISIBLE_DEVICES or nvidia-smi shows); for worker and generate, several run each "
                            "job together", SERVICE, API)
    gpus_per_worker: int = setting(1, "GPUs each of serve's workers runs its jobs over (default 1)", API, ge=1)
    parallel: int = setting(1, "with --device cpu: processes that run each job together over gloo (default 1); "
                               "with --gpus, the number of GPUs named", SERVICE, ge=1)
    guidance_parallel: GuidanceParallel = setting("auto", "over several GPUs: run a guided step's passes side by "
                                                          "side (auto) or each over all GPUs (off)", SERVICE)
    sequence_exchange: SequenceExchange = setting("auto", "over several GPUs: how attention trades the split video "
                                                          "tokens: auto, ulysses or allgather", SERVICE)
    collective_timeout: float = setting(120.0, "seconds a GPU of a group may keep the others waiting before the job "
                                               "goes back to the queue and the group restarts (default 120)",
                                        SERVICE, gt=0)
    share_gpus: bool = setting(False, "allow more --workers than GPUs (several workers then share a GPU)", API)
    lease_seconds: float = setting(60.0, "a job's lease; a worker silent this long loses the job (default 60)",
                                   SERVICE, gt=0)
    max_attempts: int = setting(3, "attempts before a job whose worker keeps dying fails (default 3)", SERVICE, ge=1)
    drain_seconds: float = setting(0.0, "on SIGTERM a worker stops claiming and gets this long to finish its job; "
                                        "past it the job goes back to the queue at once, for another worker "
                                        "(default 0: at once)", SERVICE, ge=0)
    max_body_bytes: int = setting(25 * 1024 * 1024, "largest request body accepted (default 25 MB)", API, ge=1)
    price: int = setting(DEFAULT_PRICE, "credits per video (default 10)", API, ge=0)
    prices: Annotated[dict[str, int], NoDecode] = setting({}, "per-quality prices, e.g. 1080p=20,720p=10", API)
    sound_price: int = setting(1, "credits per second (started) of new sound for a video: POST /jobs/{id}/sound, "
                                  "sound_only (default 1)", API, ge=0)
    rate_limit_per_minute: int = setting(60, "submits per key per minute (default 60; 0 = no limit)", API, ge=0)
    max_concurrent_jobs: int = setting(0, "cap on queued + running jobs per key, refused with 429 over it (default 0: "
                                          "no cap, jobs wait their fair turn)", API, ge=0)
    metrics_token: str = setting("", "bearer token GET /metrics asks for (default none: /metrics is open)", API)
    media_url_ttl: int = setting(24 * 3600, "seconds a signed media link stays valid (default 86400)", API, ge=1)
    signing_secret: str = setting("", "secret for media links (default: generated once in the data folder)", API)
    zero_data_retention: bool = setting(False, "keep no prompt or image after a job ends; delete outputs after "
                                               "--output-ttl", SERVICE)
    output_ttl: float = setting(3600.0, "seconds outputs are kept under --zero-data-retention (default 3600)", SERVICE,
                              ge=0)
    keep_jobs: float = setting(30 * 86400.0, "how long a finished job, its events and webhook deliveries are kept "
                                             "after it ended, then deleted with its files: seconds, or a number "
                                             "with s, m, h or d (default 30d; 0 = forever)", SERVICE, ge=0)
    decode_concurrency: int = setting(2, "requests whose images and control video the API decodes at once at "
                                         "submit; the rest wait their turn (default 2)", API, ge=1)
    header_timeout: float = setting(10.0, "seconds a client gets to send a request's headers once it connected or "
                                          "its last answer ended; then the connection is closed (default 10)", API,
                                    gt=0)
    public_base_url: str = setting("", "the server's public address for links (default: from each request)", API)
    poll_interval: float = setting(0.2, "seconds an idle worker waits between looks at the queue (default 0.2)",
                                   SERVICE, gt=0)
    fetch_allow_hosts: str = setting("", "comma-separated hosts image_url may fetch from, and webhook_url may "
                                         "point at, although they resolve to private addresses (default none)", API)
    fetch_timeout: float = setting(10.0, "seconds to fetch one image_url, redirects included (default 10)", API,
                                   gt=0)
    webhook_url: str = setting("", "server-level webhook of the OpenAI surface: video.completed / video.failed of "
                                   "every OpenAI-form job are POSTed here (default none)", API)
    webhook_secret: str = setting("", "signing secret of --webhook-url, whsec_ + base64 of 24..64 random bytes (as "
                                      "OpenAI's; `pixgen webhooks new-secret` makes one)", API)
    webhook_timeout: float = setting(10.0, "seconds one webhook delivery may take (default 10)", API, gt=0)
    webhook_retry_base: float = setting(10.0, "seconds before a failed webhook is retried; doubles each time "
                                              "(default 10)", API, gt=0)
    webhook_retry_max: float = setting(3600.0, "longest wait between two webhook attempts (default 3600)", API,
                                       gt=0)
    webhook_give_up_after: float = setting(86400.0, "seconds after its event a webhook is given up (default "
                                                    "86400)", API, ge=0)
    media_store: str = setting("", "where videos are kept: the data folder (default) or s3://bucket/prefix",
                               SERVICE)
    s3_endpoint_url: str = setting("", "address of an S3-compatible service for --media-store s3://... "
                                       "(default: AWS)", SERVICE)

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise _config_error(exc, values) from None

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Flags (init values) over ``PIXGEN_*`` variables; no dotenv or secrets files."""
        environ = _ENVIRON.get()
        return init_settings, (env_settings if environ is None else _Environ(settings_cls, environ))

    @field_validator("prices", mode="before")
    @classmethod
    def _prices(cls, value: Any) -> Any:
        """``"1080p=20, 720p=12"`` (flag or variable) → ``{"1080p": 20, "720p": 12}``."""
        if isinstance(value, str):
            pairs = [p.split("=", 1) for p in value.split(",") if p.strip()]
            if any(len(p) != 2 for p in pairs):
                raise ValueError("give QUALITY=CREDITS pairs separated by commas, e.g. 1080p=20,720p=10")
            return {k.strip(): v.strip() for k, v in pairs}
        return value

    @field_validator("keep_jobs", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        """``"30d"``, ``"12h"``, ``"90m"``, ``"45s"`` or a number of seconds → seconds."""
        if isinstance(value, str) and value.strip()[-1:].lower() in _UNITS:
            number, unit = value.strip()[:-1], value.strip()[-1].lower()
            try:
                return float(number) * _UNITS[unit]
            except ValueError:
                raise ValueError("give a duration: seconds, or a number with s, m, h or d (e.g. 30d)") from None
        return value

    @field_validator("warmup")
    @classmethod
    def _warmup(cls, value: str) -> str:
        parse_warmup(value)  # a ValueError names the item
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("webhook_url") and not value:
            raise ValueError("--webhook-url needs a signing secret too")
        if value:
            try:
                size = len(base64.b64decode(value.removeprefix("whsec_"), validate=True))
            except (binascii.Error, ValueError):
                size = 0
            if not value.startswith("whsec_") or not 24 <= size <= 64:
                raise ValueError("a webhook secret is whsec_ + base64 of 24..64 random bytes")
        return value

    @model_validator(mode="before")
    @classmethod
    def _derived(cls, data: Any) -> Any:
        """Defaults that follow other settings: the database sits in the data folder unless given."""
        if isinstance(data, dict) and not data.get("database_url"):
            folder = Path(data.get("data_dir") or "data").expanduser()
            data = {**data, "database_url": f"sqlite:///{folder / 'pixgen.db'}"}
        return data

    @field_validator("data_dir")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("parallel")
    @classmethod
    def _parallel(cls, value: int, info: ValidationInfo) -> int:
        """--parallel agrees with --gpus, and means CPU processes only where the device says CPU."""
        named = len(_gpu_list(info.data.get("gpus", "")))
        if named > 1 and value not in (1, named):
            raise ValueError(f"{value} processes but --gpus names {named} GPUs: one job runs over the GPUs named")
        if value > 1 and named <= 1 and info.data.get("device") != "cpu":
            raise ValueError("--parallel N runs N CPU processes over gloo: add --device cpu, or name the GPUs "
                             "with --gpus (e.g. --gpus 0,1)")
        return value

    # -- derived values ---------------------------------------------------------------------------------------
    def engine_options(self) -> EngineOptions:
        """How a worker (or ``pixgen generate``) loads its engine."""
        return EngineOptions(device=self.device, dtype=self.dtype, memory=self.memory, compile=self.compile,
                             attention_backend=self.attention_backend, step_cache=self.step_cache,
                             guidance_parallel=self.guidance_parallel, sequence_exchange=self.sequence_exchange,
                             fp8_compute=self.fp8_compute, overlap=self.overlap, warmup=self.warmup)

    @property
    def gpu_list(self) -> list[str]:
        return _gpu_list(self.gpus)

    @property
    def ranks(self) -> int:
        """Processes that run each job together (``worker``, ``generate``): the GPUs named, or ``--parallel``."""
        return max(len(self.gpu_list), self.parallel)

    @property
    def media_dir(self) -> Path:
        """The local media folder (the default media store)."""
        return self.data_dir / "media"

    @property
    def work_dir(self) -> Path:
        """Where a worker writes a video before it goes into the media store."""
        return self.data_dir / "work"

    @property
    def heartbeat_interval(self) -> float:
        """Lease renewal period: three renewals fit in one lease, so one slow beat does not lose the job."""
        return max(0.2, min(5.0, self.lease_seconds / 3))

    def price_for(self, quality: str) -> int:
        return int(self.prices.get(quality, self.price))

    def with_secret(self) -> Settings:
        """These settings with a signing secret: the given one, or the one kept in the data folder."""
        if self.signing_secret:
            return self
        return self.model_copy(update={"signing_secret": _stored_secret(self.data_dir)})

    def to_env(self) -> dict[str, str]:
        """The settings as ``PIXGEN_*`` variables, so a worker subprocess reads exactly these settings."""
        env = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, Mapping):
                value = ",".join(f"{k}={v}" for k, v in value.items())
            elif isinstance(value, bool):
                value = "1" if value else "0"
            env[env_name(name)] = str(value)
        return env


def _gpu_list(text: str) -> list[str]:
    return [g.strip() for g in text.split(",") if g.strip()]


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def load_settings(overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None, *,
                  secret: bool = True) -> Settings:
    """Defaults, then ``PIXGEN_*`` variables (``environ``, else the process's), then ``overrides`` (parsed CLI
    flags; None values are ignored).

    ``secret=False``: leave ``signing_secret`` as given, for commands that sign nothing (``keys``, ``status``),
    so they never create the data folder and its secret file where they are run.
    """
    flags = {name: value for name, value in (overrides or {}).items()
             if value is not None and name in Settings.model_fields}
    token = _ENVIRON.set(environ)
    try:
        settings = Settings(**flags)
    finally:
        _ENVIRON.reset(token)
    return settings.with_secret() if secret else settings


def _config_error(exc: ValidationError, flags: Mapping[str, Any]) -> ConfigError:
    """The first problem, naming the setting where it came from: its flag when one was given, else its variable."""
    err = exc.errors()[0]
    name = str(err.get("loc", ("settings",))[0])
    source = f"{flag_name(name)} {flags[name]!r}" if name in flags else f"{env_name(name)}={err.get('input')!r}"
    if name not in Settings.model_fields:
        return ConfigError(f"unknown setting {name!r}", field=name)
    return ConfigError(f"{source}: {err.get('msg', 'invalid value')}", field=name)


def _stored_secret(data_dir: Path) -> str:
    """A random secret created once per data folder (race-safe: the first writer wins, others read it)."""
    path = data_dir / "signing_secret"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
    for _ in range(50):  # another process may be between create and write
        text = path.read_text().strip()
        if text:
            return text
        time.sleep(0.01)
    raise ConfigError(f"{path} is empty", field="signing_secret")


# -- command-line flags: one flag per setting, named after it; absent flags leave variables and defaults alone --
def names_for(scope: str) -> tuple[str, ...]:
    """The settings whose flag commands of ``scope`` take (``SERVICE``, ``API``, ``DB``)."""
    return tuple(name for name, f in Settings.model_fields.items() if scope in _scopes(f))


def _scopes(field: FieldInfo) -> list[Any]:
    """The command scopes ``setting`` recorded for a field."""
    extra = field.json_schema_extra
    scopes = extra.get("scopes") if isinstance(extra, dict) else None
    return scopes if isinstance(scopes, list) else []


def add_arguments(parser: Any, names: tuple[str, ...]) -> None:
    """Add ``--flag`` for each setting in ``names`` (defaults None: the variable or default stands)."""
    for name in names:
        field = Settings.model_fields[name]
        help_text = f"{field.description} [{env_name(name)}]"
        if field.annotation is bool:
            parser.add_argument(flag_name(name), dest=name, action="store_const", const=True, default=None,
                                help=help_text)
        else:
            parser.add_argument(flag_name(name), dest=name, default=None, metavar=name.upper(), help=help_text)


def settings_from_args(args: Any, *, secret: bool = True) -> Settings:
    return load_settings({name: getattr(args, name, None) for name in Settings.model_fields}, secret=secret)


SERVICE_FLAGS = names_for(SERVICE)
API_FLAGS = tuple(name for name in names_for(API) if name not in SERVICE_FLAGS)
DB_FLAGS = names_for(DB)
