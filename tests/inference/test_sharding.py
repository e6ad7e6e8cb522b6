"""Two processes share one folder: each takes its shard, each output is produced exactly once, one manifest."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from attnseg_monai.inference import MANIFEST_NAME, collect_inputs, resolve_rank, shard
from attnseg_monai.io.atomic import TEMP_MARKER

from .helpers import HANNET_OVERRIDES, write_png


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_shards_are_disjoint_and_cover_the_sorted_inputs(tmp_path, monkeypatch):
    for i in range(7):
        write_png(tmp_path / f"c{i}.png", 8, 8)
    cases = collect_inputs(tmp_path).cases
    parts = [shard(cases, r, 3) for r in range(3)]
    assert sorted(c.case_id for p in parts for c in p) == [f"c{i}" for i in range(7)]
    assert [c.case_id for c in parts[1]] == ["c1", "c4"]
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert resolve_rank() == (1, 2)
    assert resolve_rank(0, 1) == (0, 1)
    with pytest.raises(ValueError):
        resolve_rank(2, 2)
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(ValueError, match="RANK"):
        resolve_rank()


@pytest.mark.parametrize("process_group", [False, True], ids=["env-only", "gloo"])
def test_two_processes_write_each_output_once(hannet_checkpoint, tmp_path, process_group):
    names = [f"c{i}" for i in range(6)]
    for i, name in enumerate(names):
        write_png(tmp_path / "in" / f"{name}.png", 24, 32, seed=i)
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "attnseg_monai",
        "infer",
        "hannet",
        str(tmp_path / "in"),
        str(out),
        "--checkpoint",
        str(hannet_checkpoint),
        "--overrides",
        json.dumps(HANNET_OVERRIDES),
        "--device",
        "cpu",
        "--num_workers",
        "0",
        "--noprogress",
        "--json",
    ]
    port = str(_free_port())
    procs = []
    for rank in (0, 1):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank)}
        env.pop("MASTER_ADDR", None)
        if process_group:
            env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = [p.communicate(timeout=600) for p in procs]
    for p, (_, stderr) in zip(procs, results):
        assert p.returncode == 0, stderr[-3000:]
    summaries = [json.loads(stdout) for stdout, _ in results]
    written = [set(s["written"]) for s in summaries]
    assert written[0] == {"c0", "c2", "c4"} and written[1] == {"c1", "c3", "c5"}
    assert all(s["total"] == 3 and s["world_size"] == 2 and not s["failed"] for s in summaries)
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["counts"] == {"done": 6, "failed": 0, "writing": 0}
    for name in names:
        record = manifest["cases"][name]
        assert record["status"] == "done" and record["rank"] == int(name[1:]) % 2
        assert {e["path"] for e in record["outputs"].values()} == {f"{name}_instances.png", f"{name}_classes.png"}
    assert sorted(p.name for p in out.glob("*.png")) == sorted(
        f"{n}_{k}.png" for n in names for k in ("classes", "instances")
    )
    assert not [p for p in out.iterdir() if TEMP_MARKER in p.name]
    assert not list((out / ".attnseg" / "parts").glob("*.json")), "every process merged and removed its part"
