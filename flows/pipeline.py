"""`pipeline`: models x targets. Each model is resolved once; each target runs one `chain`.

A chain runs on its target's work pool through `run_deployment` when a worker for that hardware is
online, and in this process otherwise (embedded mode). Targets on different hardware run in parallel
(targets on one device take turns anyway: one benchmark per device). On an accelerator, the next
chain's skill is generated while the current chain benchmarks (`overlap_plan` says when that leaves
the measurement alone). One target's failure never stops the others. The run ends with a table
artifact and a markdown report.
"""

from __future__ import annotations

import contextvars
import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

from accel.flows.chain import chain
from accel.flows.report import publish
from accel.flows.results import ChainResult, PipelineResult, chain_result
from accel.flows.runs import reconcile_runs, record_final_state, recorded_run, store
from accel.hardware import Target, parse_targets
from accel.tasks.device_lock import holder
from accel.tasks.generate_stage import generate_isolated
from accel.tasks.isolated import interrupted, raise_if_interrupted
from accel.tasks.progress import add_listener, remove_listener, stage_progress
from accel.tasks.resolve_stage import resolve_isolated

CHAIN_DEPLOYMENT = "chain/{hardware}"


@task(name="resolve_model", task_run_name="resolve {ref}")
def resolve_model_task(ref: str) -> dict[str, Any]:
    model = resolve_isolated(ref, progress=stage_progress("resolve", ref=ref))
    return {"ref": ref, **{k: model[k] for k in ("path", "revision", "family", "task", "parameters")}}


def remote_pools() -> set[str]:
    """Hardware kinds whose work pool has an online worker and a chain deployment."""
    found = set()
    with get_client(sync_client=True) as client:
        try:
            pools = client.read_work_pools()
        except Exception:  # no server (ephemeral mode): everything runs here
            return found
        for pool in pools:
            if not pool.name.startswith("accel-"):
                continue
            hardware = pool.name.removeprefix("accel-")
            workers = client.read_workers_for_work_pool(pool.name)
            if not any(str(w.status).upper().endswith("ONLINE") for w in workers):
                continue
            try:
                client.read_deployment_by_name(CHAIN_DEPLOYMENT.format(hardware=hardware))
            except ObjectNotFound:
                continue
            found.add(hardware)
    return found


def _failed(model: str, target: str, message: str) -> ChainResult:
    return ChainResult(model=model, target=target, run_id="-", status="failed", stage="generate", message=message)


def _await_remote(hardware: str, params: dict[str, Any], pickup_timeout_s: float):
    """Start the chain deployment of `hardware` and wait for its final state.

    None when no worker picked the run up within `pickup_timeout_s` (a worker that went away without
    saying so still looks online for a while): the run is cancelled and the caller runs it here.
    """
    from prefect.states import Cancelled, Cancelling

    flow_run = run_deployment(CHAIN_DEPLOYMENT.format(hardware=hardware), parameters=params, timeout=0)
    deadline = time.monotonic() + pickup_timeout_s
    with get_client(sync_client=True) as client:
        while True:
            if interrupted():  # Ctrl-C on `accel run`: the run it started on a worker ends too
                client.set_flow_run_state(flow_run.id, Cancelling(message="its pipeline was interrupted"))
                raise_if_interrupted()
            state = client.read_flow_run(flow_run.id).state
            if state is not None and state.is_final():
                return state
            waiting = state is None or state.is_scheduled() or state.is_pending()
            if waiting and time.monotonic() > deadline:
                client.set_flow_run_state(flow_run.id, Cancelled(message="no worker picked it up"), force=True)
                return None
            time.sleep(1.0)


def _run_chain(
    model: str, target: Target, params: dict[str, Any], remote: set[str], pickup_timeout_s: float, logger: Any
) -> ChainResult:
    state = None
    if target.hardware in remote:
        for attempt in range(2):  # a lost worker (Crashed) is worth one more try; a failure is not
            state = _await_remote(target.hardware, params, pickup_timeout_s)
            if state is not None:
                _close_row(state, logger)
            if state is None or not state.is_crashed() or attempt:
                break
            logger.warning("the chain of %s on %s crashed (%s): trying once more", model, target, state.message)
        if state is None:
            logger.warning("no accel-%s worker took %s on %s: running it here", target.hardware, model, target)
            remote.discard(target.hardware)  # and the rest of this hardware's chains too
    if state is None:
        with without_heartbeats():  # it runs in this flow's process, whose heartbeats stand for it
            state = chain(**params, return_state=True)
        _close_row(state, logger)
    # The chain's outcome is what it recorded, wherever it ran: read back from the results store.
    run_id = state.state_details.flow_run_id
    if run_id is not None:
        try:
            return chain_result(store(), str(run_id))
        except KeyError:  # no row: the chain never started (or died before its first write)
            pass
    return _failed(model, str(target), f"the chain ended {state.name}: {state.message}")


@contextmanager
def without_heartbeats() -> Iterator[None]:
    """Flow runs started here send no heartbeats of their own.

    Prefect's flow runs send a heartbeat event every 180 s (its default) so that an automation can mark a
    run whose process died Crashed; a sync flow's end then waits for its heartbeat thread's current
    one-second sleep (0.45 s on average: a tiny chain's subflow and `accel run`'s pipeline each took that
    long to return after they finished). A chain run in its pipeline's process needs none of its own: the
    pipeline's cover that process. Nor does `accel run`'s pipeline: the command waits on it, and says how
    its process ended. A flow run a worker starts keeps Prefect's heartbeats."""
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


def _close_row(state: Any, logger: Any) -> None:
    """A chain killed on its worker never closed its own row: record how Prefect saw it end."""
    run_id = state.state_details.flow_run_id
    if run_id is None:
        return
    try:
        record_final_state(str(run_id), state)
    except Exception as err:  # the row stays for reconcile_runs; the chain's outcome matters more
        logger.warning("could not record how chain %s ended: %s", run_id, err)


Group = list[tuple[str, Target]]


def overlap_plan(groups: dict[str, Group], remote: set[str], force: bool = False) -> dict[str, set[int]]:
    """Per hardware group, the chains i during whose benchmark chain i+1's skill is generated here.

    Generation runs on this machine's CPU, so it overlaps only a benchmark on another device:
    - never on the CPU: CPU work beside a CPU benchmark makes its figures noisy (forced on in a test,
      the point measured beside an export was flagged noisy: others' CPU share over 10%);
    - never while this pipeline also has CPU targets: their benchmarks would get it beside them;
    - never for chains that run on a worker (its skill is made where that worker is), nor under
      `force` (the next chain would make its skill again).
    What the generation runs on the target's device (its validation, all of it for torch there) waits
    for the device slot, so the benchmark's device stays its own.
    """
    cpu_here = "cpu" in groups
    return {
        hardware: set() if hardware == "cpu" or cpu_here or hardware in remote or force else set(range(len(items) - 1))
        for hardware, items in groups.items()
    }


def _benchmarking_here(hardware: str) -> bool:
    """This process holds `hardware`'s device slot: a chain of this pipeline is benchmarking on it."""
    who = holder(hardware)
    return bool(who) and who.get("pid") == os.getpid()


def _generate_beside(ref: str, target: Target, chain_done: threading.Event, logger: Any) -> None:
    """Generate `target`'s skill once the running chain has taken the device for its benchmark; a chain
    that ends without benchmarking (its test failed) leaves it to the next chain, which generates as usual."""
    while not _benchmarking_here(target.hardware):
        if chain_done.wait(0.1):
            return
    try:
        skill = generate_isolated(ref, str(target), device_slot=target.hardware)
    except Exception as err:  # the next chain generates it again and reports why it fails, in its own row
        logger.warning("generating %s for %s beside a benchmark failed: %s: %s", ref, target, type(err).__name__, err)
        return
    logger.info("generated %s for %s (%s) beside the benchmark on %s", ref, target, skill.skill_id, target.hardware)


def run_group(
    items: Group,
    overlap: set[int],
    common: dict[str, Any],
    remote: set[str],
    pickup_timeout_s: float,
    logger: Any,
) -> list[ChainResult]:
    """One hardware group's chains, one after the other; during chain i's benchmark (i in `overlap`)
    chain i+1's skill is generated here, and chain i+1 starts once that is done (it then reuses it)."""
    done = []
    for i, (ref, target) in enumerate(items):
        where = f"pool accel-{target.hardware}" if target.hardware in remote else "this process"
        logger.info("chain %s on %s: %s", ref, target, where)
        chain_params = {"model": ref, "target": str(target), **common}
        chain_done, beside = threading.Event(), None
        if i in overlap:
            beside = threading.Thread(
                target=contextvars.copy_context().run,
                args=(_generate_beside, *items[i + 1], chain_done, logger),
                name=f"generate {items[i + 1][1]} beside",
            )
            beside.start()
        try:
            done.append(_run_chain(ref, target, chain_params, remote, pickup_timeout_s, logger))
        except Exception as err:  # never let one target take the others down
            done.append(_failed(ref, str(target), f"{type(err).__name__}: {err}"))
        finally:
            chain_done.set()
            if beside is not None:
                beside.join()
    return done


@flow(name="pipeline", persist_result=True, log_prints=True)
def pipeline(
    models: list[str],
    targets: list[str],
    level: str = "comprehensive",
    bench: dict[str, Any] | None = None,
    force: bool = False,
    parent_run_id: str | None = None,
    trigger: str | None = None,
    pickup_timeout_s: float = 120.0,
) -> PipelineResult:
    parsed = parse_targets(targets)
    params = {"models": models, "targets": [str(t) for t in parsed], "level": level, "bench": bench or {}}
    logger = get_run_logger()
    reconcile_runs()  # rows of earlier runs whose processes died are closed before new ones start
    with recorded_run("pipeline", params, parent_run_id, trigger) as run:
        resolved = {}
        results: list[ChainResult] = []
        for ref in models:
            try:
                resolved[ref] = resolve_model_task(ref)
            except Exception as err:  # a model that does not resolve fails its targets, not the others
                results += [_failed(ref, str(t), f"model does not resolve: {err}") for t in parsed]
        remote = remote_pools()
        groups: dict[str, Group] = defaultdict(list)
        for ref in resolved:
            for target in parsed:
                groups[target.hardware].append((ref, target))

        common = {
            "level": level,
            "bench": bench or {},
            "force": force,
            "parent_run_id": run.run_id,
            "trigger": trigger,
        }
        overlap = overlap_plan(groups, remote, force)
        # One thread per hardware kind; each carries this flow's context so its chains are subflows.
        with ThreadPoolExecutor(max_workers=max(1, len(groups))) as pool:
            futures = [
                pool.submit(
                    contextvars.copy_context().run,
                    run_group,
                    items,
                    overlap[hardware],
                    common,
                    remote,
                    pickup_timeout_s,
                    logger,
                )
                for hardware, items in groups.items()
            ]
            for future in futures:
                results += future.result()
        order = {(m, str(t)): i for i, (m, t) in enumerate((m, t) for m in models for t in parsed)}
        results.sort(key=lambda r: order.get((r.model, r.target), 0))
        publish(f"accel pipeline {run.run_id}", results)
        failed = [f"{r.model} on {r.target}: {r.message}" for r in results if r.status != "passed"]
        if failed:
            run.fail("; ".join(failed)[:2000])
        return PipelineResult(run_id=run.run_id, status="failed" if failed else "passed", results=results)


def pipeline_reporting(progress: Callable[[str, float], None], **params: Any) -> dict[str, Any]:
    """`pipeline(**params)` for a caller in another process (`accel run`, through tasks/isolated's `call`,
    forked from flows/warm_engine's server): each progress event reaches it as one line, "MODEL on TARGET:
    STAGE STEP", and the result as JSON."""
    current = {"chain": ""}
    lock = threading.Lock()  # chains of different hardware report from threads of their own

    def relay(payload: dict[str, Any]) -> None:
        with lock:
            if payload.get("model") and payload.get("target"):
                current["chain"] = f"{payload['model']} on {payload['target']}"
            line = f"{current['chain']}: {payload['stage']} {payload['step']}".lstrip(": ")
            progress(line, float(payload.get("progress") or 0.0))

    add_listener(relay)
    try:
        with without_heartbeats():  # its caller waits on it, and says how it ended
            return pipeline(**params).model_dump(mode="json")
    finally:
        remove_listener(relay)
