"""With MAX_REUSABLE, the next lease of an instance finds nothing of the previous one: a lease
leaves one of everything it can leave behind, and the next lease on the same instance looks
for each of them, and counts the renderer processes."""

from __future__ import annotations

import asyncio

from tests.security.sandbox_support import instance_of, lease, renderers, run_server, serve_site
from tests.server.conftest import wait_until

LEAVE = """(async () => {
  document.cookie = 'left=1; max-age=3600; path=/';
  localStorage.setItem('left', '1');
  sessionStorage.setItem('left', '1');
  await new Promise((ok, fail) => {
    const req = indexedDB.open('left', 1);
    req.onupgradeneeded = () => req.result.createObjectStore('s');
    req.onsuccess = () => {
      const tx = req.result.transaction('s', 'readwrite');
      tx.objectStore('s').put('1', 'k');
      tx.oncomplete = () => { req.result.close(); ok(); };
      tx.onerror = fail;
    };
    req.onerror = fail;
  });
  await caches.open('left').then(c => c.put('/left', new Response('1')));
  await navigator.serviceWorker.register('/sw.js');
  await navigator.serviceWorker.ready;
  window.open(location.origin + '/?popup', '_blank');
  return 'left';
})()"""

FIND = """(async () => ({
  cookie: document.cookie,
  localStorage: localStorage.length,
  sessionStorage: sessionStorage.length,
  indexedDB: (await indexedDB.databases()).map(d => d.name),
  caches: await caches.keys(),
  serviceWorkers: (await navigator.serviceWorker.getRegistrations()).length,
  geolocation: (await navigator.permissions.query({name: 'geolocation'})).state,
}))()"""

NOTHING = {"cookie": "", "localStorage": 0, "sessionStorage": 0, "indexedDB": [],
           "caches": [], "serviceWorkers": 0}


async def test_the_next_lease_finds_nothing_of_the_previous_one(sandboxed) -> None:
    """Lease 1 leaves a cookie, localStorage, sessionStorage, an IndexedDB database, a
    cache, a service worker, a granted permission and a popup; lease 2 of the same instance
    finds none of them, only its own page, and no more renderers than lease 1 had fresh."""
    settings = sandboxed.replace(max_reusable=5, num_warm=1, max_instances=1)
    async with serve_site() as site, run_server(settings) as srv:
        async with lease(srv) as first:
            child = instance_of(srv.pool, first.id).pid
            await first.goto(site + "/")
            fresh = renderers(child)
            await first.send("Browser.grantPermissions", origin=site,
                             permissions=["geolocation"])
            assert await first.page("Runtime.evaluate", expression=LEAVE, awaitPromise=True,
                                    returnByValue=True, userGesture=True)
            left = await first.js(FIND)
            assert left["localStorage"] == 1 and left["serviceWorkers"] == 1, left
            assert left["geolocation"] == "granted" and left["indexedDB"] == ["left"], left
            pages = [t for t in (await first.send("Target.getTargets"))["targetInfos"]
                     if t["type"] == "page"]
            assert len(pages) == 2, "the popup opened"

        await wait_until(lambda: srv.pool.counts()["instances"]["idle"] == 1, 60)
        async with lease(srv) as second:
            assert instance_of(srv.pool, second.id).pid == child, "the same instance"
            await second.goto(site + "/")
            found = await second.js(FIND)
            targets = (await second.send("Target.getTargets"))["targetInfos"]
            others = [f"{t['type']} {t['url']}" for t in targets
                      if t["targetId"] != second.page_target and t["type"] != "browser"]
            await asyncio.sleep(0.5)  # a renderer that is going has its moment to go
            now = renderers(child)
        assert {k: found[k] for k in NOTHING} == NOTHING
        assert found["geolocation"] != "granted"
        assert others == []
        assert now <= fresh, f"{now} renderers after a reset, {fresh} fresh"
