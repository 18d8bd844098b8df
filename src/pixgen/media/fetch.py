"""Fetch a start/end frame (or a control video) from an http(s) URL without letting a request reach into the server's
own network.

The SSRF guard, hop by hop (at most ``max_redirects`` redirects, each one checked like the first URL):

1. Only ``http``/``https`` URLs, without user:password, up to ``MAX_URL`` characters.
2. The host is resolved once; EVERY address it resolves to must be public (``forbidden_address``): loopback,
   private, link-local, CGNAT, multicast, reserved, unspecified, documentation and cloud-metadata ranges are
   refused, for IPv4 and IPv6 alike, IPv4 inside IPv6 (mapped, 6to4, NAT64) included.
3. The connection goes to the checked address itself (the URL's host is swapped for the IP; ``Host`` and, for
   https, SNI and certificate checking keep the real name), so a second DNS answer cannot slip in between the
   check and the connection (DNS rebinding). No proxy from the environment is used.
4. The body is streamed and dropped past ``max_bytes``; the whole fetch, redirects and DNS included, has
   one deadline (``timeout`` seconds).
5. The bytes must decode as PNG, JPEG or WebP (``media.images.open_image``: pixel limits, no other format);
   a control video's must be an MP4 (``media.control_video``).

Hosts in ``allow_hosts`` (an operator setting) may resolve to private addresses; cloud-metadata addresses stay
refused even for them. Every refusal is an ``InvalidRequest`` naming the field the URL came in.

Outbound webhooks go through the same guard (``check_destination`` at submit, ``post_checked`` for each delivery:
rules 1–3, one deadline, no redirects followed).
No FastAPI and no torch here: the API process calls ``fetch_image`` in a worker thread.
"""

from __future__ import annotations

import base64
import ipaddress
import socket
import ssl
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace

import httpx

from pixgen.errors import InvalidRequest
from pixgen.media.audio import MAX_AUDIO_BYTES, audio_data_uri
from pixgen.media.control_video import MAX_CONTROL_VIDEO_BYTES, video_data_uri
from pixgen.media.images import MAX_IMAGE_BYTES, image_type

MAX_URL = 4096
REDIRECTS = (301, 302, 303, 307, 308)
USER_AGENT = "pixgen-image-fetch/1"
WEBHOOK_USER_AGENT = "pixgen-webhooks/1"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]  # (host, port) → the addresses it resolves to, as strings

# Never fetched from, allow-listed host or not: instance metadata services (AWS / GCP / Azure / OpenStack at
# 169.254.169.254, AWS ECS task metadata, AWS IPv6 IMDS, Alibaba, Azure's wire server).
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "169.254.170.2", "169.254.169.123", "fd00:ec2::254", "100.100.100.200", "168.63.129.16",
))

# Not public, spelled out (the ``ipaddress`` flags are checked too; this list does not depend on their version).
BLOCKED_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24",
    "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
    "::/96", "::ffff:0:0/96", "64:ff9b:1::/48", "100::/64", "2001::/23", "2001:db8::/32", "fc00::/7",
    "fe80::/10", "fec0::/10", "ff00::/8",
))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


@dataclass(frozen=True)
class FetchPolicy:
    allow_hosts: frozenset[str] = frozenset()  # lower-case host names or IP literals
    timeout: float = 10.0  # seconds for the whole fetch
    max_bytes: int = MAX_IMAGE_BYTES
    max_redirects: int = 3
    verify: bool | ssl.SSLContext = True  # TLS certificate checking: the system's CAs, or a context of your own

    @classmethod
    def from_settings(cls, allow_hosts: str | Iterable[str] = "", timeout: float = 10.0) -> FetchPolicy:
        """``allow_hosts`` as the setting spells it: ``"images.internal, 10.0.0.5"``."""
        items = allow_hosts.split(",") if isinstance(allow_hosts, str) else allow_hosts
        return cls(allow_hosts=frozenset(_norm_host(h) for h in items if h.strip()), timeout=float(timeout))

    def allows(self, host: str) -> bool:
        return _norm_host(host) in self.allow_hosts


def forbidden_address(ip: IPAddress) -> bool:
    """True for every address that is not a public unicast one (IPv4 carried inside IPv6 is judged as IPv4)."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return forbidden_address(embedded)
    if ip in METADATA_ADDRESSES or any(ip in net for net in BLOCKED_NETWORKS if net.version == ip.version):
        return True
    return (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved
            or ip.is_unspecified or not ip.is_global)


def fetch_image(url: object, policy: FetchPolicy, *, field: str = "image_url",
                resolve: Resolver | None = None) -> str:
    """The image at ``url`` as a ``data:image/(png|jpeg|webp);base64,...`` URI, or ``InvalidRequest(field=field)``.

    Typed by its bytes; it is decoded (pixel limits, truncated or disguised files) with every other start and
    end frame when the job is submitted (``images.check_request_images``), not twice.
    """
    data = fetch_bytes(url, policy, field=field, resolve=resolve)
    kind = image_type(data)  # what the server claims in Content-Type is ignored
    if kind is None:
        raise InvalidRequest(f"{field} does not point at a PNG, JPEG or WebP image", field=field)
    return f"data:image/{kind};base64,{base64.b64encode(data).decode('ascii')}"


def fetch_video(url: object, policy: FetchPolicy, *, field: str = "control_video",
                resolve: Resolver | None = None) -> str:
    """The MP4 at ``url`` (at most ``MAX_CONTROL_VIDEO_BYTES``) as a ``data:video/mp4;base64,...`` URI, typed by its
    bytes; opened with every other control video when the job is submitted."""
    data = fetch_bytes(url, replace(policy, max_bytes=MAX_CONTROL_VIDEO_BYTES), field=field, resolve=resolve)
    return video_data_uri(data, field=field)


def fetch_audio(url: object, policy: FetchPolicy, *, field: str = "audio", resolve: Resolver | None = None) -> str:
    """The audio file at ``url`` (at most ``MAX_AUDIO_BYTES``) as a ``data:audio/...;base64,`` URI, typed by its
    bytes; decoded with the rest of the request's media when the job is submitted."""
    data = fetch_bytes(url, replace(policy, max_bytes=MAX_AUDIO_BYTES), field=field, resolve=resolve)
    return audio_data_uri(data, field=field)


def fetch_bytes(url: object, policy: FetchPolicy, *, field: str = "image_url",
                resolve: Resolver | None = None) -> bytes:
    """The body at ``url`` after the guard's checks on every hop (see the module docstring)."""
    deadline = time.monotonic() + policy.timeout
    current = check_url(url, field)
    for _ in range(policy.max_redirects + 1):
        location = _one_hop(current, policy, field, deadline, resolve or _system_resolver(deadline, field))
        if isinstance(location, bytes):
            return location
        current = check_url(location, field, what="redirects to")
    raise InvalidRequest(f"{field} redirects more than {policy.max_redirects} times", field=field)


def check_url(url: object, field: str, *, what: str = "is") -> httpx.URL:
    """A URL the guard will try: http(s), a host, no credentials."""
    if not isinstance(url, (str, httpx.URL)):
        raise InvalidRequest(f"{field} must be an http(s) URL string", field=field)
    text = str(url).strip()
    if not text or len(text) > MAX_URL:
        raise InvalidRequest(f"{field} must be an http(s) URL of 1 to {MAX_URL} characters", field=field)
    try:
        parsed = httpx.URL(text)
    except (httpx.InvalidURL, ValueError):
        raise InvalidRequest(f"{field} {what} not a valid URL", field=field) from None
    if parsed.scheme not in ("http", "https"):
        scheme = parsed.scheme or "none"
        raise InvalidRequest(f"{field} {what} a {scheme!r} URL; only http and https are fetched", field=field)
    if not parsed.host:
        raise InvalidRequest(f"{field} {what} a URL without a host", field=field)
    if parsed.userinfo:
        raise InvalidRequest(f"{field} must not carry a user name or password", field=field)
    return parsed


def check_destination(url: object, policy: FetchPolicy, *, field: str, resolve: Resolver | None = None) -> str:
    """Rules 1 and 2 for a URL we will POST to later: its host must resolve, to allowed addresses only."""
    parsed = check_url(url, field)
    host = parsed.raw_host.decode("ascii").lower()
    deadline = time.monotonic() + policy.timeout
    _checked_addresses(host, _port(parsed), policy, field, resolve or _system_resolver(deadline, field))
    return str(parsed)


def post_checked(url: object, body: bytes, headers: dict[str, str], policy: FetchPolicy, *,
                 field: str = "webhook_url", resolve: Resolver | None = None) -> httpx.Response:
    """POST ``body`` pinned to a checked address (rules 1–3), within ``policy.timeout``; a redirect is answered as
    it is, not followed. Its response body is read up to 64 kB. ``InvalidRequest`` when refused by the guard,
    ``httpx.HTTPError`` when the receiver cannot be reached."""
    parsed = check_url(url, field)
    host = parsed.raw_host.decode("ascii").lower()
    deadline = time.monotonic() + policy.timeout
    addresses = _checked_addresses(host, _port(parsed), policy, field, resolve or _system_resolver(deadline, field))
    extensions = {"sni_hostname": host} if parsed.scheme == "https" and not _is_ip_literal(host) else {}
    headers = {"Host": parsed.netloc.decode("ascii"), "User-Agent": WEBHOOK_USER_AGENT, **headers}
    last_error: httpx.HTTPError | None = None
    for ip in addresses:
        timeout = httpx.Timeout(max(0.1, deadline - time.monotonic()))
        with httpx.Client(trust_env=False, follow_redirects=False, timeout=timeout,
                          limits=httpx.Limits(max_keepalive_connections=0), verify=policy.verify) as client:
            try:
                with client.stream("POST", parsed.copy_with(host=str(ip)), content=body, headers=headers,
                                   extensions=extensions) as response:
                    read = 0
                    for chunk in response.iter_bytes():
                        read += len(chunk)
                        if read > 65536 or time.monotonic() > deadline:
                            break
                    return response
            except httpx.ConnectError as exc:
                last_error = exc  # the host's next (checked) address
    assert last_error is not None
    raise last_error


def _port(url: httpx.URL) -> int:
    return url.port or (443 if url.scheme == "https" else 80)


# -- one request ----------------------------------------------------------------------------------------------
def _one_hop(url: httpx.URL, policy: FetchPolicy, field: str, deadline: float,
             resolve: Resolver) -> bytes | httpx.URL:
    """GET ``url`` pinned to a checked address: the body (2xx) or the next URL (a redirect)."""
    host = url.raw_host.decode("ascii").lower()
    port = url.port or (443 if url.scheme == "https" else 80)
    addresses = _checked_addresses(host, port, policy, field, resolve)
    headers = {"Host": url.netloc.decode("ascii"), "User-Agent": USER_AGENT, "Accept": "image/*",
               "Accept-Encoding": "identity"}
    extensions = {}
    if url.scheme == "https" and not _is_ip_literal(host):
        extensions["sni_hostname"] = host  # TLS talks to, and checks the certificate of, the name, not the IP
    last_error: Exception | None = None
    for ip in addresses:
        pinned = url.copy_with(host=str(ip))
        remaining = _remaining(deadline, policy, field)
        # One client per hop, no keep-alive: a connection checked for one name is never reused for another.
        with httpx.Client(trust_env=False, follow_redirects=False, timeout=httpx.Timeout(remaining),
                          limits=httpx.Limits(max_keepalive_connections=0), verify=policy.verify) as client:
            try:
                with client.stream("GET", pinned, headers=headers, extensions=extensions) as response:
                    return _read(response, url, policy, field, deadline)
            except httpx.ConnectError as exc:
                if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                    raise InvalidRequest(f"{field}: the TLS certificate of {host} could not be verified",
                                         field=field) from None
                last_error = exc  # try the host's next (checked) address
            except httpx.TimeoutException:
                raise InvalidRequest(f"{field} did not answer within {policy.timeout:g} s", field=field) from None
            except httpx.HTTPError as exc:
                raise InvalidRequest(f"{field} could not be fetched: {type(exc).__name__}", field=field) from None
    raise InvalidRequest(f"{field} could not be fetched: cannot connect to {host}"
                         f"{f' ({type(last_error).__name__})' if last_error else ''}", field=field)


def _read(response: httpx.Response, url: httpx.URL, policy: FetchPolicy, field: str,
          deadline: float) -> bytes | httpx.URL:
    if response.status_code in REDIRECTS:
        location = response.headers.get("location")
        if not location:
            raise InvalidRequest(f"{field} answered a redirect without a Location", field=field)
        try:
            return url.join(location)
        except (httpx.InvalidURL, ValueError):
            raise InvalidRequest(f"{field} redirects to an invalid URL", field=field) from None
    if not 200 <= response.status_code < 300:
        raise InvalidRequest(f"{field} could not be fetched: HTTP {response.status_code}", field=field)
    too_large = InvalidRequest(f"{field} is larger than {policy.max_bytes:,} bytes", field=field)
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > policy.max_bytes:
        raise too_large
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > policy.max_bytes:
            raise too_large
        if time.monotonic() > deadline:
            raise InvalidRequest(f"{field} did not arrive within {policy.timeout:g} s", field=field)
    return bytes(body)


# -- addresses ------------------------------------------------------------------------------------------------
def _checked_addresses(host: str, port: int, policy: FetchPolicy, field: str, resolve: Resolver) -> list[IPAddress]:
    """Every address ``host`` resolves to, all of them allowed, or ``InvalidRequest``."""
    found = [host] if _is_ip_literal(host) else resolve(host, port)
    addresses = []
    for text in found:
        try:
            addresses.append(ipaddress.ip_address(text.split("%", 1)[0]))  # drop an IPv6 zone ("fe80::1%eth0")
        except ValueError:
            raise InvalidRequest(f"{field}: the host {host} resolves to an unusable address", field=field) from None
    if not addresses:
        raise InvalidRequest(f"{field}: the host {host} does not resolve", field=field)
    allowed = policy.allows(host)
    for ip in addresses:
        if ip in METADATA_ADDRESSES or (not allowed and forbidden_address(ip)):
            raise InvalidRequest(f"{field} points at a private, local or reserved network address; this server "
                                 f"fetches images from public addresses only", field=field)
    return addresses


_RESOLVER_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="pixgen-dns")


def _system_resolver(deadline: float, field: str) -> Resolver:
    """``getaddrinfo`` bounded by the fetch's deadline (it has no timeout of its own)."""

    def resolve(host: str, port: int) -> list[str]:
        future = _RESOLVER_POOL.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
        try:
            infos = future.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            raise InvalidRequest(f"{field}: looking up {host} took too long", field=field) from None
        except (socket.gaierror, UnicodeError, OSError):
            raise InvalidRequest(f"{field}: the host {host} does not resolve", field=field) from None
        return list(dict.fromkeys(str(info[4][0]) for info in infos))

    return resolve


def _remaining(deadline: float, policy: FetchPolicy, field: str) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise InvalidRequest(f"{field} did not arrive within {policy.timeout:g} s", field=field)
    return remaining


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _norm_host(host: str) -> str:
    return host.strip().strip("[]").lower().rstrip(".")
