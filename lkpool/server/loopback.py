"""A TCP connection whose other end is on this machine needs no pacing.

Linux paces TCP when the congestion control asks for it, and BBR (a common system default,
this machine's too) always does: with no `fq` qdisc the pacing is TCP's own, a timer and a
softirq per burst of segments. On a real network that spreads bursts out so queues stay
short; over loopback there is no queue to protect, and the timers are pure cost. Measured
on the frames WebSocket at 1280x720@30 raw (110 MB/s per viewer): each viewer cost the
server 1.9% of a core under BBR and 1.4% under reno (`python -m bench.stream`), and a bare
`sendall` of the same bytes 2.0% vs 1.0%.

So a local peer's socket (a viewer on the host, or the reverse proxy in front of the
server, the usual production hop) is switched to reno, which never paces; remote peers
keep the system's choice. Reno is the one algorithm every process may always choose.
"""

from __future__ import annotations

import ipaddress
import logging
import socket

logger = logging.getLogger(__name__)

UNPACED = b"reno"


def is_local(sock: socket.socket) -> bool:
    """True for a TCP socket connected to a loopback address (IPv4, IPv6 or IPv4-mapped)."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type != socket.SOCK_STREAM:
        return False
    try:
        address = ipaddress.ip_address(sock.getpeername()[0])
    except (OSError, ValueError):
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def unpace(sock: socket.socket | None) -> bool:
    """Switches a local peer's socket to a congestion control that does not pace; True when
    it did. Anything else (a remote peer, a Unix socket, a kernel without TCP_CONGESTION)
    is left as it is."""
    if sock is None or not hasattr(socket, "TCP_CONGESTION") or not is_local(sock):
        return False
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, UNPACED)
    except OSError as exc:
        logger.debug("could not set %s on %s: %s", UNPACED.decode(), sock, exc)
        return False
    return True
