from accel.hardware import detect
from accel.storage import ResultsStore
from accel.tasks.environment import environment_record, record_this_environment


def test_this_machine_is_recorded_once_with_its_facts(tmp_path):
    store = ResultsStore(tmp_path / "r.duckdb")
    profile = detect()
    first = record_this_environment(store, profile)
    assert record_this_environment(store) == first  # a fresh detection of the same machine: same id
    assert store.count("environments") == 1
    env = store.get_environment(first)
    assert env.logical_cores == profile.cpu.logical_cores
    assert env.libraries["torch"] == profile.libraries["torch"]
    assert env.profile["runtimes"]["onnxruntime"]["installed"] is True
    assert environment_record(profile).environment_id == first
