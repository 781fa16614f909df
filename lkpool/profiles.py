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
import shutil
import tempfile
import time
from pathlib import Path

PREFIX = "lkpool-"
DOWNLOADS = "Downloads"
SINGLETON_FOLDER_PREFIX = "org.chromium.Chromium."


def create(base_dir: str) -> str:
    """A fresh profile folder (mode 0700) under `base_dir`, which is made 0700 too when it is
    ours: profiles hold a lease's cookies, storage and downloads, no one else's to list."""
    os.makedirs(base_dir, mode=0o700, exist_ok=True)
    if os.stat(base_dir).st_uid == os.geteuid() and os.stat(base_dir).st_mode & 0o077:
        os.chmod(base_dir, 0o700)
    return tempfile.mkdtemp(prefix=PREFIX, dir=base_dir)


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


def purge_leftovers(base_dir: str) -> list[str]:
    """Removes profile folders (named `PREFIX`...) that an earlier run left under `base_dir`
    when it died, with their singleton folders, and Chromium's `Singleton*` lock files
    there. A folder that a running process still names on its command line belongs to a
    live instance and is kept."""
    base = Path(base_dir)
    if not base.is_dir():
        return []
    in_use = _profiles_in_use()
    removed = []
    for entry in base.iterdir():
        if entry.name.startswith("Singleton"):
            entry.unlink(missing_ok=True)
        elif (entry.name.startswith(PREFIX) and entry.is_dir() and not entry.is_symlink()
              and str(entry) not in in_use):
            remove(str(entry))
            removed.append(str(entry))
    return removed


def _profiles_in_use() -> set[str]:
    found = set()
    import psutil  # here: the child imports this module, and needs nothing of psutil

    for proc in psutil.process_iter(["cmdline"]):
        for arg in proc.info.get("cmdline") or ():
            if arg.startswith("--user-data-dir="):
                found.add(os.path.normpath(arg.split("=", 1)[1]))
    return found
