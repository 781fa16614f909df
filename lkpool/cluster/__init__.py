"""lkpool across machines: nodes that share one Redis serve one API (REDIS_URL set).

    ids.py        session ids that route themselves: {name}.{incarnation}.{random}
    store.py      the Redis client, the key prefix, the Lua scripts (lua/)
    registry.py   this node: register, heartbeat (state rewritten), reap, figures
    placement.py  POST /browser anywhere: place atomically, the FIFO queue, the owner makes it
    routing.py    /session/{id}/... and /browser/{id} of other nodes, proxied to the owner
    internal.py   the node-to-node endpoints, behind CLUSTER_SECRET
    node.py       Cluster: the above tied into the aiohttp app

docs/ARCHITECTURE.md ("The cluster") records the design and its failure handling.
"""
