"""Run a bundle's ``training`` workflow with a per-iteration loss log, optionally killing itself (SIGKILL).

Used by the kill tests, in a subprocess or imported::

    python tests/handlers/train_bundle.py BUNDLE_ROOT LOSS_LOG OVERRIDES_JSON [--kill-at-iteration N]
        [--kill-during-save N]

``--kill-during-save N`` writes half of the N-th checkpoint into its temporary file, then kills the process (a
kill in the middle of a checkpoint write); ``--kill-at-iteration N`` kills it right after iteration N.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

__all__ = ["run_training"]


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def run_training(
    bundle_root: str | Path,
    loss_log: str | Path,
    overrides: dict[str, Any],
    *,
    kill_at_iteration: int | None = None,
    kill_during_save: int | None = None,
) -> Any:
    """Train with MONAI's ConfigWorkflow (as ``monai.bundle run training``), appending ``iteration loss`` lines."""
    import torch
    from ignite.engine import Events
    from monai.bundle import ConfigWorkflow

    import attnseg_monai.handlers.checkpoint as ckpt_module
    from attnseg_monai.io.atomic import atomic_open

    if kill_during_save is not None:
        real_save = ckpt_module.atomic_torch_save
        calls = {"n": 0}

        def partial_then_kill(obj: Any, path: Any, save: Any = torch.save) -> Path:
            calls["n"] += 1
            if calls["n"] == kill_during_save:
                buffer = io.BytesIO()
                save(obj, buffer)
                data = buffer.getvalue()
                with atomic_open(path) as fh:
                    fh.write(data[: len(data) // 2])
                    fh.flush()
                    os.fsync(fh.fileno())
                    _kill()
            return real_save(obj, path, save=save)

        ckpt_module.atomic_torch_save = partial_then_kill

    root = Path(bundle_root)
    wf = ConfigWorkflow(
        config_file=str(root / "configs" / "train.json"),
        meta_file=str(root / "configs" / "metadata.json"),
        logging_file=False,
        workflow_type="train",
        run_id="training",
        **overrides,
    )
    wf.initialize()
    trainer = wf.parser.get_parsed_content("train#trainer")
    log = open(loss_log, "a")  # noqa: SIM115 - kept open for the run, closed below

    @trainer.on(Events.ITERATION_COMPLETED)
    def record(engine: Any) -> None:
        output = engine.state.output
        item = output[0] if isinstance(output, (list, tuple)) else output
        log.write(f"{engine.state.iteration} {float(item['loss'])!r}\n")
        log.flush()
        os.fsync(log.fileno())
        if kill_at_iteration is not None and engine.state.iteration == kill_at_iteration:
            _kill()

    try:
        wf.run()
        wf.finalize()
    finally:
        log.close()
    return wf


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("bundle_root")
    parser.add_argument("loss_log")
    parser.add_argument("overrides")
    parser.add_argument("--kill-at-iteration", type=int, default=None)
    parser.add_argument("--kill-during-save", type=int, default=None)
    args = parser.parse_args()
    run_training(
        args.bundle_root,
        args.loss_log,
        json.loads(args.overrides),
        kill_at_iteration=args.kill_at_iteration,
        kill_during_save=args.kill_during_save,
    )


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    main()
