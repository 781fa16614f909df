"""Profile folders: a fresh one per instance under CHROMIUM_PROFILE_BASE_DIR, and what
Chromium ties to it outside that folder.

Downloads go to the profile's own `Downloads` folder (the child tells Chromium so at start),
not to `$HOME/Downloads`, where every lease's files would pile up on the host and outlive
their instance; the reuse policy empties it between leases.

Chromium's process singleton (the lock that keeps a second browser off a profile) puts its
socket in a folder of its own in the temp dir (`/tmp/org.chromium.Chromium.XXXXXX`) and
links it from the profile as `SingletonSocket`. Only a clean exit removes that folder, and
an instance's browser is killed with its process group: removing a profile removes the
folder too, or the temp dir would collect one per instance for as long as the pool runs.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from pathlib import Path

PREFIX = "lkpool-"
DOWNLOADS = "Downloads"
SINGLETON_FOLDER_PREFIX = "org.chromium.Chromium."


def create(base_dir: str) -> str:
    """A fresh profile folder (mode 0700), named after the server process that owns it (see
    purge), under `base_dir`, which is made 0700 too when it is ours: profiles hold a
    lease's cookies, storage and downloads, no one else's to list."""
    os.makedirs(base_dir, mode=0o700, exist_ok=True)
    if os.stat(base_dir).st_uid == os.geteuid() and os.stat(base_dir).st_mode & 0o077:
        os.chmod(base_dir, 0o700)
    return tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=base_dir)


def downloads_dir(profile: str) -> str:
    return os.path.join(profile, DOWNLOADS)


def empty_downloads(profile: str) -> None:
    """What a lease downloaded goes, before the instance serves the next lease."""
    folder = downloads_dir(profile)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder, exist_ok=True)


def remove(path: str) -> None:
    """Removes a profile folder and Chromium's singleton folder outside it."""
    _remove_singleton_folder(path)
    for _ in range(3):
        shutil.rmtree(path, ignore_errors=True)
        if not os.path.exists(path):
            return
        time.sleep(0.2)  # a dying browser may still be writing into it


def _remove_singleton_folder(profile: str | Path) -> None:
    try:
        socket_path = os.readlink(os.path.join(profile, "SingletonSocket"))
    except OSError:
        return
    folder = os.path.dirname(socket_path)
    # only the folder Chromium made for it: a link is data, and data can point anywhere
    if (os.path.isabs(folder) and os.path.basename(folder).startswith(SINGLETON_FOLDER_PREFIX)
            and os.path.isdir(folder) and not os.path.islink(folder)):
        shutil.rmtree(folder, ignore_errors=True)


def purge_leftovers(base_dir: str, owner: str = "") -> list[str]:
    """Removes the profile folders this server's previous run left under `base_dir` when it
    died, with their singleton folders, and Chromium's `Singleton*` lock files there.

    Several servers may share `base_dir` (nodes on one host): each folder is named after
    the pid of the server that made it (`PREFIX{pid}-...`), and a run records its pid in a
    file named after `owner` (the node's name and port) beside `base_dir`, so the folder
    itself holds nothing but profiles. A start removes only the folders of the pid its
    owner recorded last, once that process is gone: never a folder of a live server, nor
    another node's. A folder of the older naming (no pid) goes unless a running process
    names it on its command line."""
    base = Path(base_dir)
    if not base.is_dir():
        return []
    ledger = _ledger(base_dir, owner)
    try:
        previous = int(ledger.read_text().strip())
    except (OSError, ValueError):
        previous = 0
    try:
        ledger.parent.mkdir(exist_ok=True)
        ledger.write_text(str(os.getpid()))
    except OSError:  # a base dir whose parent is not ours: its next start purges less
        pass
    import psutil  # here: the child imports this module, and needs nothing of psutil

    previous_gone = previous > 0 and previous != os.getpid() and not psutil.pid_exists(previous)
    in_use = _profiles_in_use()
    removed = []
    for entry in base.iterdir():
        if entry.name.startswith("Singleton"):
            entry.unlink(missing_ok=True)
            continue
        if not entry.name.startswith(PREFIX) or not entry.is_dir() or entry.is_symlink():
            continue
        tag = entry.name[len(PREFIX):].partition("-")
        if tag[1] and tag[0].isdigit():
            ours = previous_gone and int(tag[0]) == previous
        else:
            ours = str(entry) not in in_use
        if ours:
            remove(str(entry))
            removed.append(str(entry))
    return removed


def _ledger(base_dir: str, owner: str) -> Path:
    """`.{base dir's name}.owners/{owner}` beside the base dir."""
    base = Path(base_dir).resolve()
    return base.parent / f".{base.name}.owners" / re.sub(r"[^A-Za-z0-9_.-]", "_", owner)


def forget_owner(base_dir: str, owner: str) -> None:
    """A clean stop: nothing is left to purge, so the owner's record goes too."""
    ledger = _ledger(base_dir, owner)
    try:
        if ledger.read_text().strip() == str(os.getpid()):
            ledger.unlink()
            ledger.parent.rmdir()  # when no other node's record is left in it
    except (OSError, ValueError):
        pass


def _profiles_in_use() -> set[str]:
    found = set()
    import psutil  # here: the child imports this module, and needs nothing of psutil

    for proc in psutil.process_iter(["cmdline"]):
        for arg in proc.info.get("cmdline") or ():
            if arg.startswith("--user-data-dir="):
                found.add(os.path.normpath(arg.split("=", 1)[1]))
    return found
