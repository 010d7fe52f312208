"""Beyond one machine (SPEC section 13): instances joined through PostgreSQL.

A source and a sink of signals beside `sources/`: `store` is the only module that
speaks SQL; `sender` raises on other nodes from any process; `receiver` runs in the
sources helper (never in the master: it holds connections and a thread) and hands
what arrives to the local master; `unique` claims the fires of unique timers and
crons; `state` is the shared memory the stats and `cluster_nodes()` read.
"""
