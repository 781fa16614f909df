"""Slowloris: 500 connections that send half a request head are closed after
CLIENT_TIMEOUT, and the server answers a normal request all along."""

from __future__ import annotations

import asyncio

import pytest

from tests.security.conftest import host_of, request
from tests.server.conftest import run_server

pytestmark = pytest.mark.timeout(120)
CONNECTIONS = 500


async def _half_head(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET /browsers HTTP/1.1\r\nHost: {host}:{port}\r\nX-Slow: ".encode())
    await writer.drain()
    return reader, writer


async def test_half_headers_are_closed_and_the_server_still_answers(edge) -> None:
    """Each of 500 half-sent heads is closed by the server (EOF) within a bounded wait;
    meanwhile and afterwards GET /health answers."""
    async with run_server(edge.replace(client_timeout=2.0)) as srv:
        host, port = host_of(srv.base).split(":")
        conns = await asyncio.gather(*(_half_head(host, int(port))
                                       for _ in range(CONNECTIONS)))
        try:
            status, _ = await request(srv.base, "GET", "/health")
            assert status == 200

            async def closed_by_server(reader: asyncio.StreamReader) -> bool:
                try:
                    data = await asyncio.wait_for(reader.read(), 30)
                except (ConnectionError, TimeoutError):
                    return False
                return data == b"" or data.startswith(b"HTTP/1.1 4")

            results = await asyncio.gather(*(closed_by_server(r) for r, _ in conns))
            assert all(results), f"{results.count(False)} of {CONNECTIONS} stayed open"
            status, _ = await request(srv.base, "GET", "/health")
            assert status == 200
        finally:
            for _, writer in conns:
                writer.close()


async def test_a_body_that_trickles_gets_a_408(edge) -> None:
    """A JSON body announced but sent too slowly is answered 408 after CLIENT_TIMEOUT."""
    async with run_server(edge.replace(client_timeout=1.0)) as srv:
        host, port = host_of(srv.base).split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            writer.write(f"POST /browser HTTP/1.1\r\nHost: {host}:{port}\r\n"
                         "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
                         .encode())
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            assert head.startswith(b"HTTP/1.1 408"), head
        finally:
            writer.close()
        assert not srv.pool.list()
