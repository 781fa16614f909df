#!/usr/bin/env python3
"""Fetch the CEF binaries that ENGINE=cef (livekit.browser) needs, with progress.

    python scripts/download_cef.py                 # into livekit.browser's cache folder
    python scripts/download_cef.py --dest DIR      # somewhere else (then see the hint)

It calls `livekit.browser.download()`; livekit.browser then finds the binaries under
$XDG_CACHE_HOME (or ~/.cache)/livekit/browser/<version>/<platform>/. Exit status: 0 done (or
already there), 1 the download failed (offline, proxy, HTTP error), 2 livekit-browser is not
installed or the platform is not supported.
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
import time
import urllib.error
from pathlib import Path


def _progress(tarball: Path, done: threading.Event, out) -> None:
    """Prints how much of the tarball has arrived; livekit.browser's download has no hook."""
    started = time.monotonic()
    while not done.wait(0.5):
        size = tarball.stat().st_size if tarball.exists() else 0
        rate = size / max(time.monotonic() - started, 1e-3)
        print(f"\r  {size / 1e6:8.1f} MB  {rate / 1e6:6.1f} MB/s", end="", file=out, flush=True)
    print(file=out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", type=Path, help="folder to unpack into (default: "
                        "livekit.browser's cache folder, where it looks)")
    parser.add_argument("--version", help="livekit-browser release (default: the installed "
                                          "package's version)")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds without data before giving up (default %(default)s)")
    args = parser.parse_args(argv)
    try:
        import livekit.browser as lkb
    except ImportError as exc:
        print(f"download_cef: livekit-browser is not installed ({exc}); "
              "pip install 'lkpool[cef]'", file=sys.stderr)
        return 2
    # the submodule, not the function of the same name that livekit.browser re-exports
    dl = sys.modules["livekit.browser.download"]
    version = args.version or lkb.__version__
    try:
        platform = dl._detect_platform()
    except RuntimeError as exc:
        print(f"download_cef: {exc}", file=sys.stderr)
        return 2
    default = dl._default_cache_dir() / version / platform
    dest = (args.dest or default).resolve()
    url = dl._GITHUB_RELEASE_URL.format(version=version, platform=platform)
    if (dest / ".downloaded").exists():
        print(f"CEF binaries {version} ({platform}) already in {dest}")
        return 0
    created = not dest.exists()
    print(f"downloading CEF binaries {version} ({platform})\n  from {url}\n  into {dest}",
          file=sys.stderr)
    socket.setdefaulttimeout(args.timeout)  # urlretrieve has no timeout of its own
    done = threading.Event()
    watcher = threading.Thread(target=_progress, args=(dest / "lkcef.tar.gz", done, sys.stderr),
                               daemon=True)
    watcher.start()
    try:
        lkb.download(version=version, dest=dest)
    except (urllib.error.URLError, OSError, EOFError) as exc:
        reason = getattr(exc, "reason", None) or exc
        print(f"\ndownload_cef: cannot download {url}: {reason}.\n"
              "  Check the network (or HTTPS_PROXY); or fetch that file elsewhere, unpack it "
              f"into {dest} and create an empty {dest / '.downloaded'}.", file=sys.stderr)
        if created and dest.exists() and not any(dest.iterdir()):
            dest.rmdir()  # leave nothing half-made behind
        return 1
    finally:
        done.set()
        watcher.join()
    print(f"CEF binaries ready in {dest}")
    if dest != default.resolve():
        print(f"note: livekit.browser looks in {default}; set XDG_CACHE_HOME so that "
              "<XDG_CACHE_HOME>/livekit/browser/<version>/<platform> is this folder, or move it.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
