"""Service settings, read in one place: command-line flags over ``PIXGEN_*`` environment variables over defaults.

``Settings`` is frozen and passed down; nothing else reads the environment. ``load_settings`` is the one way in.
Each field's environment variable is ``PIXGEN_`` + its upper-cased name (``PIXGEN_DATABASE_URL``, ...).
"""

from __future__ import annotations

import dataclasses
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from pixgen.errors import InvalidRequest

DEFAULT_PRICE = 10  # credits per video, as the PixelDojo seed
DTYPE_CHOICES = ("auto", "bfloat16", "float16", "float32")  # the engine's (pixgen.engine.ltx2.loading)


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path("data")
    database_url: str = ""  # "" → sqlite:///{data_dir}/pixgen.db
    model: str = "tiny"
    cache_dir: Path | None = None  # where the toy model is built; None → the engine's default
    device: str = "auto"  # auto (the worker's GPU if any, else the CPU) | cpu | cuda | cuda:N
    dtype: str = "auto"  # auto (bfloat16 on a GPU, float32 on a CPU) | bfloat16 | float16 | float32
    workers: int = 1
    gpus: str = ""  # GPUs for serve's workers, one each (CUDA_VISIBLE_DEVICES ids); "" → those visible
    share_gpus: bool = False  # allow more workers than GPUs (they take turns round-robin)
    lease_seconds: float = 60.0
    max_attempts: int = 3
    max_body_bytes: int = 25 * 1024 * 1024
    price: int = DEFAULT_PRICE
    prices: Mapping[str, int] = field(default_factory=dict)  # per quality, e.g. {"1080p": 20}; else ``price``
    rate_limit_per_minute: int = 60  # accepted submits per key per rolling minute (0 = no limit)
    max_concurrent_jobs: int = 8  # pending + processing jobs per key (0 = no cap)
    media_url_ttl: int = 24 * 3600
    signing_secret: str = ""  # "" → generated once and kept in {data_dir}/signing_secret
    zero_data_retention: bool = False
    output_ttl: int = 3600  # seconds outputs are kept in zero-data-retention mode
    public_base_url: str = ""  # e.g. https://video.example.com; "" → taken from each request
    poll_interval: float = 0.2  # how often an idle worker looks for work
    fetch_allow_hosts: str = ""  # comma-separated hosts image_url may fetch from even on private addresses
    fetch_timeout: float = 10.0  # seconds for fetching one image_url, redirects included

    def __post_init__(self) -> None:
        # Derived defaults are filled here so every constructor (tests included) gets the same rules.
        object.__setattr__(self, "data_dir", Path(self.data_dir).expanduser())
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{self.data_dir / 'pixgen.db'}")
        if self.workers < 0:
            raise InvalidRequest("workers must be 0 or more", field="workers")
        if self.lease_seconds <= 0:
            raise InvalidRequest("lease_seconds must be positive", field="lease_seconds")
        if self.max_attempts < 1:
            raise InvalidRequest("max_attempts must be at least 1", field="max_attempts")
        if self.dtype not in DTYPE_CHOICES:
            raise InvalidRequest(f"dtype must be one of {', '.join(DTYPE_CHOICES)}", field="dtype")

    @property
    def media_dir(self) -> Path:
        return self.data_dir / "media"

    @property
    def heartbeat_interval(self) -> float:
        """Lease renewal period: three renewals fit in one lease, so one slow beat does not lose the job."""
        return max(0.2, min(5.0, self.lease_seconds / 3))

    def price_for(self, quality: str) -> int:
        return int(self.prices.get(quality, self.price))

    def with_secret(self) -> "Settings":
        """These settings with a signing secret: the given one, or the one kept in the data folder."""
        if self.signing_secret:
            return self
        return dataclasses.replace(self, signing_secret=_stored_secret(self.data_dir))

    def to_env(self) -> dict[str, str]:
        """The settings as ``PIXGEN_*`` variables, so a worker subprocess reads exactly these settings."""
        env = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, Mapping):
                value = ",".join(f"{k}={v}" for k, v in value.items())
            elif isinstance(value, bool):
                value = "1" if value else "0"
            env[_env_name(f.name)] = str(value)
        return env


def load_settings(overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None, *,
                  secret: bool = True) -> Settings:
    """Defaults, then ``PIXGEN_*`` variables, then ``overrides`` (parsed CLI flags; None values are ignored).

    ``secret=False``: leave ``signing_secret`` as given, for commands that sign nothing (``keys``, ``status``),
    so they never create the data folder and its secret file where they are run.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in dataclasses.fields(Settings):
        raw = environ.get(_env_name(f.name))
        if raw is not None and raw != "":
            values[f.name] = _convert(f.name, raw)
    for name, value in (overrides or {}).items():
        if value is not None and name in _FIELD_TYPES:
            values[name] = _convert(name, value) if isinstance(value, str) else value
    settings = Settings(**values)
    return settings.with_secret() if secret else settings


_FIELD_TYPES = {f.name: f.type for f in dataclasses.fields(Settings)}


def _env_name(name: str) -> str:
    return "PIXGEN_" + name.upper()


def _convert(name: str, raw: str) -> Any:
    kind = _FIELD_TYPES[name]
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
        if kind in ("Path", "Path | None"):
            return Path(raw)
        if kind.startswith("Mapping"):
            pairs = [p.split("=", 1) for p in raw.split(",") if p.strip()]
            return {k.strip(): int(v) for k, v in pairs}
    except ValueError:
        raise InvalidRequest(f"{_env_name(name)}={raw!r} is not a valid {kind}", field=name) from None
    return raw


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
        import time

        time.sleep(0.01)
    raise RuntimeError(f"{path} is empty")


# -- command-line flags: one flag per field, same name with dashes; absent flags leave env / defaults alone ------
_HELP = {
    "host": "address to listen on (default 127.0.0.1)",
    "port": "port to listen on (default 8000)",
    "data_dir": "folder for the database, media and signing secret (default ./data)",
    "database_url": "sqlite:///PATH or postgresql://USER@HOST/DB (default sqlite in the data folder)",
    "model": "tiny (the built-in toy LTX-2) or a diffusers-format LTX-2 folder",
    "cache_dir": "where the toy model is built (default ~/.cache/pixgen)",
    "device": "where the model runs: auto (the GPU if there is one), cpu, cuda or cuda:N (default auto)",
    "dtype": "weights and activations: auto (bfloat16 on a GPU, float32 on a CPU), bfloat16, float16, float32",
    "gpus": "GPUs for the workers, one each, e.g. 0,1 (default: those CUDA_VISIBLE_DEVICES or nvidia-smi shows)",
    "share_gpus": "allow more --workers than GPUs (several workers then share a GPU)",
    "workers": "worker processes to start next to the API (default 1; 0 = API only)",
    "lease_seconds": "a job's lease; a worker silent this long loses the job (default 60)",
    "max_attempts": "attempts before a job whose worker keeps dying fails (default 3)",
    "max_body_bytes": "largest request body accepted (default 25 MB)",
    "price": "credits per video (default 10)",
    "prices": "per-quality prices, e.g. 1080p=20,720p=10",
    "rate_limit_per_minute": "submits per key per minute (default 60; 0 = no limit)",
    "max_concurrent_jobs": "queued + running jobs per key (default 8; 0 = no cap)",
    "media_url_ttl": "seconds a signed media link stays valid (default 86400)",
    "signing_secret": "secret for media links (default: generated once in the data folder)",
    "zero_data_retention": "keep no prompt or image after a job ends; delete outputs after --output-ttl",
    "output_ttl": "seconds outputs are kept under --zero-data-retention (default 3600)",
    "public_base_url": "the server's public address for links (default: from each request)",
    "poll_interval": "seconds an idle worker waits between looks at the queue (default 0.2)",
    "fetch_allow_hosts": "comma-separated hosts image_url may fetch from although they resolve to private "
                         "addresses (default none)",
    "fetch_timeout": "seconds to fetch one image_url, redirects included (default 10)",
}


def add_arguments(parser: Any, names: tuple[str, ...]) -> None:
    """Add ``--flag`` for each settings field in ``names`` (defaults None: the environment or default stands)."""
    for name in names:
        flag = "--" + name.replace("_", "-")
        kind = _FIELD_TYPES[name]
        if kind == "bool":
            parser.add_argument(flag, dest=name, action="store_const", const=True, default=None, help=_HELP[name])
        else:
            parser.add_argument(flag, dest=name, default=None, metavar=name.upper(), help=_HELP[name])


def settings_from_args(args: Any, *, secret: bool = True) -> Settings:
    return load_settings({name: getattr(args, name, None) for name in _FIELD_TYPES}, secret=secret)


SERVICE_FLAGS = ("data_dir", "database_url", "model", "cache_dir", "device", "dtype", "lease_seconds",
                 "max_attempts", "zero_data_retention", "output_ttl", "poll_interval")
API_FLAGS = ("host", "port", "workers", "gpus", "share_gpus", "max_body_bytes", "price", "prices",
             "rate_limit_per_minute", "max_concurrent_jobs", "media_url_ttl", "signing_secret", "public_base_url",
             "fetch_allow_hosts", "fetch_timeout")
