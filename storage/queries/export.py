"""Row-level measurements, joined with their skill's model ref and target, written by DuckDB's own writers.

`COPY (SELECT ...) TO file` streams the rows out of DuckDB in its own threads: no row passes through
Python, whatever the size of the store.
"""

from __future__ import annotations

from pathlib import Path

from accel.storage.queries.filters import ResultFilter, page
from accel.storage.store import ResultsStore

# format -> (COPY options, media type, file suffix)
FORMATS: dict[str, tuple[str, str, str]] = {
    "csv": ("FORMAT csv, HEADER true", "text/csv", "csv"),
    "parquet": ("FORMAT parquet", "application/vnd.apache.parquet", "parquet"),
    "json": ("FORMAT json, ARRAY true", "application/json", "json"),
}

_ROWS = """
SELECT s.model_ref, s.target, s.hardware, s.runtime, s.precision, m.*
FROM measurements m JOIN skills s USING (skill_id)
WHERE {skills} AND {since}
ORDER BY m.recorded_at, m.run_id, m.skill_id, m.scenario, m.batch, m.seq
{page}
"""


def export_measurements(
    store: ResultsStore,
    where: ResultFilter,
    fmt: str,
    path: Path,
    limit: int | None = None,
    offset: int = 0,
) -> int:
    """Write the measurements `where` selects to `path` in `fmt` (one of FORMATS); returns the row count."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}: {', '.join(FORMATS)}")
    skills, skill_params = where.skill_predicate("s")
    since, since_params = where.since_predicate("m")
    paging, page_params = page(limit, offset)
    select = _ROWS.format(skills=skills, since=since, page=paging)
    sql = f"COPY ({select}) TO ? ({FORMATS[fmt][0]})"
    rows = store.query(sql, [*skill_params, *since_params, *page_params, str(path)])
    return int(rows[0]["Count"]) if rows else 0
