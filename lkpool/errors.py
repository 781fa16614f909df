"""The public exceptions of lkpool. Backend errors are mapped to the most specific one with
`raise ... from exc`; the server maps each to one HTTP status (see `status`).

    LkpoolError
     ├── ConfigError (lkpool.config)            bad setting                 -> stops start-up
     ├── EngineError                            engine cannot run here      -> 500/503
     │    └── BrowserStartError                 Chromium/Xvfb failed to start
     ├── InstanceError                          a running instance failed
     │    ├── InstanceCrashed                   the child or its browser died
     │    ├── RequestTimeout (also TimeoutError) the instance did not answer in time
     │    ├── ClosedError                       used after aclose()
     │    └── OwnerUnreachable                  the node owning a session did not answer -> 502
     ├── PageError                              the page refused a request  -> 400/422
     │    ├── NoSuchPage                        unknown page id
     │    ├── NavigationError                   the URL could not be loaded
     │    ├── DialogOpen                        input while a JS dialog waits -> 409
     │    └── FocusHeld                         someone else drives the page -> 409
     ├── InvalidArgument (also ValueError)      a size, framerate, key... out of range -> 400
     │    └── UnsupportedMediaType              a body that is not application/json -> 415
     ├── Refused                                the edge refuses the request -> 403
     │    ├── HostNotAllowed                    a Host that is not ours (DNS rebinding)
     │    └── OriginNotAllowed                  a web page of another origin
     ├── LiveKitUnreachable                     LiveKit refused or unreachable -> 502
     └── PoolError
          ├── PoolExhausted                     no instance within ACQUIRE_TIMEOUT  -> 503
          │    └── CallerGone                   the caller left before it got its lease
          ├── UnknownSession (also KeyError)    no such lease                -> 404
          ├── PoolClosed                        the pool is shutting down    -> 503
          ├── SessionGone                       ended on a node of the cluster -> 410
          │    └── NodeLost                     its node died (no heartbeat)
          └── ClusterUnavailable                the cluster's Redis is unreachable -> 503
"""

from __future__ import annotations


class LkpoolError(Exception):
    """Base of every lkpool error. `code` is a short machine-readable name."""

    code = "error"
    status = 500


class EngineError(LkpoolError):
    code = "engine_unavailable"
    status = 503


class BrowserStartError(EngineError):
    code = "browser_start_failed"


class InstanceError(LkpoolError):
    code = "instance_error"
    status = 502


class InstanceCrashed(InstanceError):
    code = "crashed"


class RequestTimeout(InstanceError, TimeoutError):
    code = "timeout"
    status = 504


class ClosedError(InstanceError):
    code = "closed"
    status = 410


class PageError(LkpoolError):
    code = "page_error"
    status = 422


class NoSuchPage(PageError):
    code = "no_such_page"
    status = 404


class NavigationError(PageError):
    code = "navigation_failed"


class DialogOpen(PageError):
    """The page shows a JavaScript dialog: input waits until it is answered."""

    code = "dialog_open"
    status = 409


class FocusHeld(PageError):
    """Someone else has the page's focus (lkpool/focus.py): a person in the room or the
    live view; for an agent, this is the "agent interrupted" signal."""

    code = "focus_held"
    status = 409


class InvalidArgument(LkpoolError, ValueError):
    code = "invalid_argument"
    status = 400


class UnsupportedMediaType(InvalidArgument):
    code = "unsupported_media_type"
    status = 415


class Refused(LkpoolError):
    """The request came from somewhere the server does not serve (lkpool.server.edge)."""

    code = "refused"
    status = 403


class HostNotAllowed(Refused):
    code = "host_not_allowed"


class OriginNotAllowed(Refused):
    code = "origin_not_allowed"


class LiveKitUnreachable(LkpoolError):
    """The LiveKit server refused or could not be reached (bad URL, token, network)."""

    code = "livekit_unreachable"
    status = 502


class PoolError(LkpoolError):
    code = "pool_error"
    status = 503


class PoolExhausted(PoolError):
    code = "pool_exhausted"
    status = 503


class CallerGone(PoolExhausted):
    """The caller closed its connection while its lease was made: it was given back."""


class UnknownSession(PoolError, KeyError):
    code = "unknown_session"
    status = 404

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "unknown session"


class PoolClosed(PoolError):
    code = "pool_closed"
    status = 503


class SessionGone(PoolError):
    """A session of the cluster that ended; `reason` says why (kept a while in Redis)."""

    code = "session_gone"
    status = 410


class NodeLost(SessionGone):
    """The session's node stopped answering heartbeats (killed, cut off) or restarted."""

    code = "node_lost"


class OwnerUnreachable(InstanceError):
    """The node that owns a session (or was placed a new lease) did not answer."""

    code = "node_unreachable"
    status = 502


class ClusterUnavailable(PoolError):
    """The cluster's shared state (Redis) cannot be reached: no placement can be made."""

    code = "cluster_unavailable"
    status = 503


# Result.code values sent by the child -> the error the parent raises
BY_CODE: dict[str, type[LkpoolError]] = {
    cls.code: cls
    for cls in (NoSuchPage, NavigationError, InvalidArgument, RequestTimeout, InstanceCrashed,
                BrowserStartError, PageError, EngineError)
}
