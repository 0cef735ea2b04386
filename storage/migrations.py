"""The results schema, as numbered migrations applied once each, in order, each in one transaction."""

from __future__ import annotations

from pathlib import Path

import duckdb

from accel.storage.connection import run_transaction

# Append only: never edit a migration that has shipped; add the next number instead.
MIGRATIONS: list[tuple[int, str, str]] = [
    (
        1,
        "initial schema",
        """
CREATE TABLE environments (
    environment_id   VARCHAR PRIMARY KEY,   -- content hash of the fields below
    host             VARCHAR NOT NULL,
    os               VARCHAR,
    python           VARCHAR,
    cpu              VARCHAR,
    architecture     VARCHAR,
    physical_cores   INTEGER,
    logical_cores    INTEGER,
    memory_bytes     BIGINT,
    accelerators     JSON,                  -- [{kind, name, memory_bytes, compute_capability}]
    libraries        JSON,                  -- {package: version}
    profile          JSON,                  -- the whole hardware profile, as detected
    recorded_at      TIMESTAMPTZ NOT NULL
);
CREATE TABLE runs (
    run_id           VARCHAR PRIMARY KEY,   -- the Prefect flow-run id
    kind             VARCHAR NOT NULL,      -- pipeline, chain, generate, test, benchmark, nightly
    trigger          VARCHAR,               -- cli, api, schedule, deployment, ...
    status           VARCHAR NOT NULL,      -- initializing, running, completed, failed, cancelled
    params           JSON,
    environment_id   VARCHAR,
    parent_run_id    VARCHAR,
    started_at       TIMESTAMPTZ,
    finished_at      TIMESTAMPTZ,
    message          VARCHAR
);
CREATE TABLE skills (
    skill_id          VARCHAR PRIMARY KEY,  -- content hash of the manifest's inputs
    model_ref         VARCHAR NOT NULL,
    model_revision    VARCHAR,
    family            VARCHAR,
    task              VARCHAR,
    architecture      VARCHAR,
    target            VARCHAR NOT NULL,     -- HARDWARE/RUNTIME[:PRECISION]
    hardware          VARCHAR NOT NULL,
    runtime           VARCHAR NOT NULL,
    precision         VARCHAR NOT NULL,
    template          VARCHAR,
    template_version  VARCHAR,
    generator_version VARCHAR,
    path              VARCHAR,
    manifest          JSON,
    created_at        TIMESTAMPTZ NOT NULL
);
CREATE TABLE checks (
    run_id        VARCHAR NOT NULL,
    skill_id      VARCHAR NOT NULL,
    "check"       VARCHAR NOT NULL,         -- loads, forward_shapes, finite, parity, ...
    status        VARCHAR NOT NULL,         -- passed, failed, skipped, error
    max_abs_diff  DOUBLE,
    max_rel_diff  DOUBLE,
    tolerance     DOUBLE,
    duration_s    DOUBLE,
    message       VARCHAR,
    details       JSON,
    recorded_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (run_id, skill_id, "check")
);
CREATE TABLE measurements (
    run_id              VARCHAR NOT NULL,
    skill_id            VARCHAR NOT NULL,
    scenario            VARCHAR NOT NULL,   -- forward, generate, ...
    batch               INTEGER NOT NULL,
    seq                 INTEGER NOT NULL,   -- tokens (text), image side px (vision), audio samples (speech)
    status              VARCHAR NOT NULL,   -- ok, error, oom, timeout, skipped
    iterations          INTEGER,
    load_s              DOUBLE,
    first_call_ms       DOUBLE,
    mean_ms             DOUBLE,
    std_ms              DOUBLE,
    min_ms              DOUBLE,
    p50_ms              DOUBLE,
    p90_ms              DOUBLE,
    p95_ms              DOUBLE,
    p99_ms              DOUBLE,
    max_ms              DOUBLE,
    samples_ms          DOUBLE[],
    samples_per_s       DOUBLE,
    tokens_per_s        DOUBLE,
    prefill_ms          DOUBLE,
    decode_ms_per_token DOUBLE,
    peak_rss_bytes      BIGINT,
    peak_accel_bytes    BIGINT,
    flops               DOUBLE,
    mfu                 DOUBLE,
    error               VARCHAR,
    recorded_at         TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (run_id, skill_id, scenario, batch, seq)
);
""",
    ),
    (
        2,
        "benchmark rigour: variation, threads, machine load, noise flag, peak FLOP/s, details",
        """
ALTER TABLE measurements ADD COLUMN cv DOUBLE;               -- std / mean of the samples
ALTER TABLE measurements ADD COLUMN threads INTEGER;         -- intra-op threads the runtime used
ALTER TABLE measurements ADD COLUMN warmup INTEGER;          -- untimed calls before measuring
ALTER TABLE measurements ADD COLUMN load_before DOUBLE;      -- 1-minute load average before the point
ALTER TABLE measurements ADD COLUMN load_after DOUBLE;       -- ... and after it
ALTER TABLE measurements ADD COLUMN noisy BOOLEAN;           -- the figure cannot be trusted
ALTER TABLE measurements ADD COLUMN peak_flops DOUBLE;       -- measured peak FLOP/s of the device
ALTER TABLE measurements ADD COLUMN details JSON;            -- shapes, noise reasons, timings
""",
    ),
    (
        3,
        "verdicts you can trust: rounds, measured contention, noise reason, theoretical peak",
        """
ALTER TABLE measurements ADD COLUMN rounds INTEGER;                 -- processes the point was measured in
ALTER TABLE measurements ADD COLUMN round_p50_ms DOUBLE[];          -- the median of each round, in order
ALTER TABLE measurements ADD COLUMN foreign_cpu_share DOUBLE;       -- others' CPU time while timing, worst round
ALTER TABLE measurements ADD COLUMN steal_share DOUBLE;             -- hypervisor steal time while timing, worst round
ALTER TABLE measurements ADD COLUMN noise_reason VARCHAR;           -- why the figure is flagged noisy
ALTER TABLE measurements ADD COLUMN peak_flops_theoretical DOUBLE;  -- cores x clock x FLOP/cycle, beside peak_flops
""",
    ),
    (
        4,
        "the generate scenario, LLM-leaderboard style: tokens decoded, bytes per decode step, bandwidth",
        """
ALTER TABLE measurements ADD COLUMN new_tokens INTEGER;              -- tokens each generate call decoded
ALTER TABLE measurements ADD COLUMN decode_bytes_per_step DOUBLE;    -- weights + KV cache read per decode step
ALTER TABLE measurements ADD COLUMN memory_bandwidth_gbs DOUBLE;     -- measured memory bandwidth, GB/s
ALTER TABLE measurements ADD COLUMN bandwidth_utilization DOUBLE;    -- bytes per step / TPOT / bandwidth
""",
    ),
]


def _apply_pending(con: duckdb.DuckDBPyConnection) -> list[int]:
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        "version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"
    )
    done = {row[0] for row in con.execute("SELECT version FROM schema_migrations").fetchall()}
    applied = []
    for version, name, sql in MIGRATIONS:
        if version in done:
            continue
        con.execute(sql)
        con.execute("INSERT INTO schema_migrations VALUES (?, ?, now())", [version, name])
        applied.append(version)
    return applied


def migrate(path: Path, timeout_s: float = 60.0) -> list[int]:
    """Bring the store at `path` to the latest schema; returns the versions applied (none if current).

    All pending migrations run in one transaction, so concurrent first starts cannot half-apply one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    return run_transaction(path, _apply_pending, timeout_s)


def schema_version(path: Path, timeout_s: float = 60.0) -> int:
    def read(con: duckdb.DuckDBPyConnection) -> int:
        exists = con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_migrations'"
        ).fetchone()[0]
        if not exists:
            return 0
        return con.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()[0]

    return run_transaction(path, read, timeout_s)
