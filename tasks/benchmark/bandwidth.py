"""Memory-bandwidth utilisation of a decode step: the bytes it must read over the machine's measured bandwidth.

One decode step (one new token for each sequence of the batch) reads every weight once and, for each
sequence, the whole KV cache at its current length; its arithmetic per byte is tiny, so its bound is the
memory bus, and bytes read per step / time per output token / measured bandwidth (hardware/
memory_bandwidth.py) says how close to it the skill runs, as MFU does for the prefill against the GEMM
peak. Bytes come from the manifest: `model.parameters` at the skill's precision, and
`generation.kv_cache` {layers, kv_heads, head_dim, dtype, encoder_decoder}, at the mean context length
over the decode steps. A skill without a cache recomputes the whole sequence each step: no utilisation
(its bound is compute), with that reason. A utilisation above 100% is withheld as a bug, with one
exception said as such: bytes that fit in the last-level cache are not read from memory each step.
"""

from __future__ import annotations

from typing import Any

from accel.hardware.memory_bandwidth import BandwidthProbe

WEIGHT_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}
KV_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


def mean_context(prompt: int, new_tokens: int, encoder_decoder: bool) -> float:
    """Positions one sequence's self-attention cache holds, averaged over the decode steps.

    Step k (k = 1 .. n-1; the prefill made the first token) attends to the prompt and k generated tokens,
    so the mean is prompt + n/2; an encoder-decoder's decoder starts from one start token instead of the
    prompt (the prompt is its cross-attention cache, read whole at every step, counted beside).
    """
    return (1 if encoder_decoder else prompt) + new_tokens / 2


def decode_bytes(manifest: dict[str, Any], batch: int, prompt: int, new_tokens: int) -> tuple[float | None, str]:
    """Bytes one decode step reads, and their basis; (None, why) where they cannot be known."""
    generation = manifest.get("generation") or {}
    cache = generation.get("kv_cache")
    if not cache:
        return None, "no KV cache: every step runs the whole sequence again, so compute, not memory, bounds it"
    precision = manifest["target"]["precision"]
    parameters = manifest["model"].get("parameters")
    if not parameters or precision not in WEIGHT_BYTES or cache.get("dtype") not in KV_BYTES:
        why = f"parameters {parameters}, precision {precision}, cache dtype {cache.get('dtype')}"
        return None, f"the manifest does not give the sizes to count the bytes read ({why})"
    weights = parameters * WEIGHT_BYTES[precision]
    per_position = 2 * cache["layers"] * cache["kv_heads"] * cache["head_dim"] * KV_BYTES[cache["dtype"]]
    encoder_decoder = bool(cache.get("encoder_decoder"))
    positions = mean_context(prompt, new_tokens, encoder_decoder) + (prompt if encoder_decoder else 0)
    kv = batch * per_position * positions
    basis = (
        f"weights {parameters:,} parameters x {WEIGHT_BYTES[precision]} B ({precision}; every parameter counted "
        f"once per step, an upper bound where some, such as an untied embedding table"
        f"{' or the encoder' if encoder_decoder else ''}, are not read) + KV cache {batch} x {positions:g} "
        f"positions x {per_position:,} B (2 x {cache['layers']} layers x {cache['kv_heads']} kv heads x "
        f"{cache['head_dim']} x {cache['dtype']}; mean context over the decode steps"
        f"{', plus the cross-attention cache of the prompt' if encoder_decoder else ''})"
    )
    return float(weights + kv), basis


def set_bandwidth_utilization(
    row: dict[str, Any],
    details: dict[str, Any],
    reasons: list[str],
    manifest: dict[str, Any],
    bandwidth: BandwidthProbe | None,
    bandwidth_error: str | None,
) -> None:
    """Fill the row's decode bytes, bandwidth and utilisation, or say in `bandwidth_withheld` why not."""
    tpot_ms = row.get("decode_ms_per_token")
    if bandwidth is not None:
        row["memory_bandwidth_gbs"] = bandwidth.gbs
        details["memory_bandwidth"] = bandwidth.model_dump(exclude={"threads"})
    found, basis = decode_bytes(manifest, row["batch"], row["seq"], row["new_tokens"])
    if found is None:
        details["bandwidth_withheld"] = basis
        return
    row["decode_bytes_per_step"], details["bandwidth_basis"] = found, basis
    if bandwidth is None:
        details["bandwidth_withheld"] = f"no measured memory bandwidth here: {bandwidth_error or 'not probed'}"
        return
    if not tpot_ms or tpot_ms <= 0:
        details["bandwidth_withheld"] = "no positive time per output token (one new token, or a timing bug)"
        return
    if not bandwidth.quiet:
        details["bandwidth_withheld"] = (
            f"the bandwidth probe ran while other processes used {bandwidth.foreign_share or 0:.0%} of the cores: "
            "a utilisation against it would be too high (the next quiet run probes again)"
        )
        return
    utilization = found / (tpot_ms / 1000) / bandwidth.bytes_per_s
    if utilization <= 1:
        row["bandwidth_utilization"] = utilization
        return
    details["bandwidth_withheld"] = f"computed {utilization:.4f}, above 1"
    llc = bandwidth.llc_bytes
    if llc and found <= llc:
        details["bandwidth_withheld"] += (
            f": the {found / 2**20:.1f} MiB read per step fit in the {llc >> 20} MiB last-level cache, so they "
            "are not read from memory each step and its bandwidth is no bound"
        )
        return
    reasons.append(
        f"impossible: bandwidth utilisation {utilization:.0%} > 100% ({found:.3g} B per step in {tpot_ms:.3g} ms "
        f"against {bandwidth.gbs:.3g} GB/s measured): a bug in the byte count or the probe, withheld"
    )
    details["bandwidth_withheld"] += ": physically impossible"
