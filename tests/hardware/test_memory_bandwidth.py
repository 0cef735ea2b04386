"""The memory bandwidth probe: a positive figure from real copies, the cache level read from sysfs, and only a
quiet probe of full-size arrays cached per machine and threads."""

import json

from accel.hardware.memory_bandwidth import (
    MIN_ARRAY_BYTES,
    default_array_bytes,
    last_level_cache_bytes,
    memory_bandwidth,
)
from accel.hardware.peak_flops import cache_key, read_cache


def test_the_probe_measures_copy_and_triad_in_a_process_of_its_own_and_small_arrays_are_never_cached(tmp_path):
    cache = tmp_path / "memory-bandwidth.json"
    probe = memory_bandwidth(2, cache, array_bytes=4 << 20, repeats=3)
    assert probe.bytes_per_s > 0 and probe.gbs == probe.bytes_per_s / 1e9
    assert probe.kernels.keys() == {"copy", "triad"} and probe.kernel in probe.kernels
    assert abs(probe.bytes_per_s - max(probe.kernels.values())) <= 1  # the best kernel's best pass (kept rounded)
    assert probe.median_bytes_per_s <= probe.bytes_per_s and 0 <= probe.spread < 1 and probe.passes == 6
    assert probe.threads == 2 and probe.array_bytes == 4 << 20 and "2 thread(s)" in probe.basis
    assert probe.foreign_share is not None and not probe.cached
    assert not cache.exists()  # arrays this small may sit in the cache: no machine figure


def test_a_quiet_probe_is_read_back_from_the_cache_for_its_threads_only(tmp_path):
    cache = tmp_path / "memory-bandwidth.json"
    quiet = {"threads": 1, "bytes_per_s": 12.5e9, "median_bytes_per_s": 12e9, "spread": 0.04, "passes": 20}
    quiet.update(kernel="copy", kernels={"copy": 12.5e9, "triad": 11e9}, array_bytes=128 << 20, llc_bytes=32 << 20)
    quiet.update(foreign_share=0.01, steal_share=0.0, quiet=True, probed_at="2026-01-01T00:00:00")
    cache.write_text(json.dumps({cache_key("cpu", "memory", 1): quiet}))
    again = memory_bandwidth(1, cache)
    assert again.cached and again.bytes_per_s == 12.5e9 and again.gbs == 12.5
    assert cache_key("cpu", "memory", 2) not in read_cache(cache)


def test_the_last_level_cache_is_the_largest_data_cache_sysfs_reports(tmp_path):
    for index, (level, kind, size) in enumerate([(1, "Data", "48K"), (1, "Instruction", "64M"), (3, "Unified", "32M")]):
        folder = tmp_path / f"index{index}"
        folder.mkdir()
        (folder / "level").write_text(f"{level}\n")
        (folder / "type").write_text(f"{kind}\n")
        (folder / "size").write_text(f"{size}\n")
    assert last_level_cache_bytes(tmp_path) == 32 << 20
    assert last_level_cache_bytes(tmp_path / "none") is None
    assert default_array_bytes(32 << 20) == 128 << 20 and default_array_bytes(None) == MIN_ARRAY_BYTES
    assert last_level_cache_bytes() is None or last_level_cache_bytes() > 0  # this machine's, where it says
