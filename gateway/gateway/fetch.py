"""Fetching product images from http(s) URLs for the catalog API, safely: no private, loopback,
link-local or otherwise internal addresses (unless the settings allow them), a size cap and a time
cap, redirects followed by hand so that every hop is checked."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urljoin, urlsplit

import httpx

MAX_REDIRECTS = 3


class FetchError(ValueError):
    """The URL is refused or its image cannot be fetched; the message says why."""


def _is_internal(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )


async def check_url(url: str, allow_private: bool) -> None:
    """Refuse anything but http(s) URLs whose host resolves only to public addresses."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchError(f"{url!r} is not an http(s) URL")
    if allow_private:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(parts.hostname, parts.port or 443)
    except socket.gaierror as exc:
        raise FetchError(f"cannot resolve {parts.hostname!r}: {exc}") from exc
    internal = sorted({str(info[4][0]) for info in infos if _is_internal(str(info[4][0]))})
    if internal:
        raise FetchError(
            f"{parts.hostname!r} resolves to a private, loopback or link-local address ({', '.join(internal)}); "
            "set GATEWAY_FETCH_ALLOW_PRIVATE=true to allow it"
        )


async def fetch_image(client: httpx.AsyncClient, url: str, max_bytes: int, allow_private: bool) -> bytes:
    """The body at ``url`` (at most ``max_bytes``), following up to MAX_REDIRECTS checked redirects."""
    for _ in range(MAX_REDIRECTS + 1):
        await check_url(url, allow_private)
        try:
            async with client.stream("GET", url, follow_redirects=False) as response:
                if response.is_redirect and "location" in response.headers:
                    url = urljoin(url, response.headers["location"])
                    continue
                if response.status_code != 200:
                    raise FetchError(f"{url} answered HTTP {response.status_code}")
                return await _read_capped(response, url, max_bytes)
        except httpx.HTTPError as exc:
            raise FetchError(f"cannot fetch {url}: {type(exc).__name__}: {exc}") from exc
    raise FetchError(f"{url}: more than {MAX_REDIRECTS} redirects")


async def _read_capped(response: httpx.Response, url: str, max_bytes: int) -> bytes:
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise FetchError(f"{url} is {declared} bytes, over the limit of {max_bytes}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise FetchError(f"{url} is over the limit of {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
