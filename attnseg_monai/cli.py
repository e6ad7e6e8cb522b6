"""The ``attnseg`` command line: a thin python-fire wrapper over :mod:`attnseg_monai.inference`.

::

    attnseg list
    attnseg info hannet
    attnseg infer hannet tiles/ predictions/ --save_overlays
    attnseg train-folds hannet --folds 5
    attnseg experiment mcsa_unet [--rows unet,all] [--epochs 50] [--out tables/mcsa]
    attnseg infer hannet tiles/ predictions/ --folds all --tta --save_uncertainty
    attnseg rank predictions/
    attnseg evaluate predictions/ labels/ --bundle hannet
    attnseg export hannet /tmp/hannet_bundle [--zip] [--checkpoint models/model.pt]

Exit codes: 0 everything succeeded; 1 some cases failed (each is listed with its reason); 2 the command could not
run (unknown bundle, untrusted bundle, bad checkpoint, bad option). ``python -m attnseg_monai`` is the same program.
See ``docs/inference.md``.
"""

from __future__ import annotations

import inspect
import json as _json
import logging
import math
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["AttnsegCLI", "main"]

logger = logging.getLogger("attnseg")


class _Exit(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _out(text: str) -> None:
    sys.stdout.write(text + ("" if text.endswith("\n") else "\n"))
    sys.stdout.flush()


_FIRE_WORDS = {"true": True, "false": False, "null": None}


def _json_words(value: Any) -> Any:
    """python-fire parses a JSON object given on the command line itself, turning its bare ``true``, ``false`` and
    ``null`` into the strings ``'true'``, ``'false'``, ``'null'``: give them their JSON meaning back."""
    if isinstance(value, dict):
        return {k: _json_words(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_words(v) for v in value]
    return _FIRE_WORDS.get(value, value) if isinstance(value, str) else value


def _overrides(
    value: Any, option: str = "--overrides", example: str = '{"roi_size": [64, 64]}'
) -> dict[str, Any] | None:
    if value is None or value == "":
        return None
    if isinstance(value, dict):
        return _json_words(value)
    if isinstance(value, str):
        try:
            parsed = _json.loads(value)
        except ValueError as exc:
            raise ValueError(f"{option} must be a JSON object such as '{example}': {exc}") from exc
        if isinstance(parsed, dict):
            return parsed
    raise ValueError(f"{option} must be a JSON object such as '{example}'.")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    return str(value)


class AttnsegCLI:
    """attnseg: batch inference, evaluation and bundle information for the attnseg-monai bundles."""

    def __init__(self) -> None:
        self._exit_code = 0
        self._argv: list[str] | None = None  # the command line, for what records it (attnseg experiment)

    def list(self, json: bool = False) -> None:
        """List the bundles of this collection (name, version, dimensions, network, task).

        Args:
            json: print JSON instead of a table.
        """
        from .bundle import list_bundles
        from .inference.bundle_loader import read_bundle_metadata, resolve_bundle

        rows = []
        for name in list_bundles():
            root, _, _ = resolve_bundle(name)
            meta = read_bundle_metadata(root)
            try:
                config = _json.loads((root / "configs" / "inference.json").read_text())
                net = config.get("network_def", {})
                target = net.get("network", net.get("_target_", "?"))  # build_network names the class in "network"
                network, dims = str(target).split(".")[-1], net.get("spatial_dims", "?")
                inferer = config.get("inferer", {})
                if isinstance(inferer, dict) and "Slice" in str(inferer.get("_target_", "")):
                    dims = f"{dims}D-slices/3"  # a 2D network run over the slices of volumes
            except (OSError, ValueError):
                network, dims = "?", "?"
            rows.append(
                {
                    "name": name,
                    "version": meta.get("version", "?"),
                    "dims": f"{dims}D",
                    "network": network,
                    "task": meta.get("task", ""),
                }
            )
        if json:
            _out(_json.dumps(rows, indent=2))
            return
        if not rows:
            _out("no bundles found")
            return
        widths = {k: max(len(k), *(len(str(r[k])) for r in rows)) for k in ("name", "version", "dims", "network")}
        _out("  ".join(k.upper().ljust(widths[k]) for k in widths) + "  TASK")
        for r in rows:
            _out("  ".join(str(r[k]).ljust(widths[k]) for k in widths) + f"  {r['task']}")

    def info(
        self,
        bundle: str,
        trust_bundle: bool = False,
        overrides: Any = None,
        input_size: Sequence[int] | None = None,
        json: bool = False,
    ) -> None:
        """Describe a bundle: network, classes, sizes, parameters, FLOPs, version, outputs and checkpoint.

        Args:
            bundle: bundle name of this collection or bundle folder.
            trust_bundle: allow a bundle folder from outside this collection (its configs run code).
            overrides: JSON object of config overrides.
            input_size: spatial size for the FLOP count (default: the inferer's window).
            json: print JSON.
        """
        from .bundle import read_record
        from .inference.bundle_loader import load_bundle
        from .networks import describe_network, network_config

        parts = load_bundle(bundle, trust_bundle=trust_bundle, overrides=_overrides(overrides), load_weights=False)
        roi = getattr(parts.inferer, "roi_size", None)
        size = tuple(int(s) for s in (input_size or roi or ([256] * 2 if parts.spatial_dims == 2 else [96] * 3)))
        desc = describe_network(parts.network, size)
        ckpt = parts.root / "models" / "model.pt"
        built = network_config(parts.network)  # what was built: the record's network when the model has one
        record = read_record(ckpt).record if ckpt.is_file() else None
        info = {
            "name": parts.name,
            "version": parts.version,
            "folder": str(parts.root),
            "in_collection": parts.trusted_collection,
            "task": parts.metadata.get("task", ""),
            "network": str(built.pop("_target_")),
            "network_args": built,
            "recipe": record.recipe if record is not None else None,
            "spatial_dims": parts.spatial_dims,
            "input_dims": parts.input_dims or parts.spatial_dims,
            "in_channels": parts.in_channels,
            "classes": parts.class_names,
            "input_spatial_shape": parts.metadata.get("network_data_format", {})
            .get("inputs", {})
            .get("image", {})
            .get("spatial_shape"),
            "inferer": type(parts.inferer).__name__,
            "roi_size": list(roi) if roi is not None else None,
            "parameters": desc.parameters,
            "flops_input_size": list(size),
            "gflops": round(desc.flops / 1e9, 3),
            "flops_per_element": round(desc.flops_per_element, 1),
            "outputs": [s.as_dict() for s in parts.outputs],
            "checkpoint": str(ckpt) if ckpt.is_file() else None,
        }
        if json:
            _out(_json.dumps(info, indent=2, default=str))
            return
        unit = "pixel" if parts.spatial_dims == 2 else "voxel"
        lines = [
            f"{info['name']} {info['version']} ({'collection' if info['in_collection'] else 'outside bundle'})",
            f"  task:        {info['task']}",
            f"  network:     {info['network']} ({parts.spatial_dims}D, {parts.in_channels} input channel(s))",
            f"  classes:     {', '.join(f'{k}={v}' for k, v in info['classes'].items())}",
            f"  input shape: {info['input_spatial_shape']}   inferer: {info['inferer']} roi {info['roi_size']}",
            f"  parameters:  {desc.parameters / 1e6:.3f} M",
            f"  FLOPs:       {info['gflops']} GFLOP at {'x'.join(map(str, size))} "
            f"({desc.flops_per_element / 1e3:.1f} kFLOP/{unit})",
            f"  outputs:     {', '.join(f'<case>_{o.postfix}{o.ext}' for o in parts.outputs)}",
            f"  checkpoint:  {info['checkpoint'] or 'none (train the bundle first)'}"
            + (f" (recipe {info['recipe']}, record beside it)" if info["recipe"] else ""),
        ]
        _out("\n".join(lines))

    def infer(self, bundle: str, input: str, output: str, *values: Any, **settings: Any) -> None:  # noqa: A002
        """Segment a folder, a glob, a datalist JSON or a file with a bundle.

        Args:
            bundle: bundle name of this collection (see `attnseg list`) or bundle folder.
            input: folder, glob (quote it), datalist JSON or image file.
            output: output folder (created); holds the outputs and attnseg_manifest.json.
            json: print the summary as JSON.
        """
        from .inference import BundlePredictor
        from .inference.options import ModelSettings, RunSettings, SlideSettings, as_dict, split_settings

        # python-fire passes the flags of the generated signature (see _declare_infer_settings) by position
        names = list(inspect.signature(AttnsegCLI.infer).parameters)[4:]
        settings = {**dict(zip(names, values)), **settings}
        json = bool(settings.pop("json", False))
        model, run, slides = split_settings(settings, ModelSettings, RunSettings, SlideSettings)
        predictor = BundlePredictor(
            device=model.device,
            precision=model.precision,
            engine=model.engine,
            tta=model.tta,
            tta_axes=model.tta_axes,
            tta_rotate=model.tta_rotate,
        )
        predictor.from_bundle(
            bundle,
            checkpoint=model.checkpoint,
            trust_bundle=model.trust_bundle,
            overrides=_overrides(model.overrides),
            folds=model.folds,
        )
        summary = predictor.predict_files(input, output, **as_dict(run, slides))
        if json:
            _out(_json.dumps(summary.as_dict(), indent=2))
        else:
            shard = f" (rank {summary.rank} of {summary.world_size})" if summary.world_size > 1 else ""
            lines = [
                f"attnseg infer{shard}: {summary.total} case(s): {len(summary.written)} written, "
                f"{len(summary.skipped)} already done, {len(summary.failed)} failed, in {summary.seconds:.1f} s",
                f"  outputs: {summary.output_dir}",
                f"  manifest: {summary.manifest} ({', '.join(f'{k} {v}' for k, v in summary.manifest_counts.items())})",
            ]
            if summary.stale:
                lines.append(
                    f"  {len(summary.stale)} finished case(s) were made with another checkpoint or bundle version; "
                    "rerun with --overwrite to redo them"
                )
            if summary.ignored:
                lines.append(f"  ignored {len(summary.ignored)} file(s) that are not images:")
                lines += [f"    {i['path']}: {i['reason']}" for i in summary.ignored]
            if summary.failed:
                lines.append("  FAILED:")
                lines += [f"    {f['input']}: {f['error']}" for f in summary.failed]
            _out("\n".join(lines))
        self._exit_code = 0 if summary.ok else 1

    def train_folds(
        self,
        bundle: str,
        folds: int = 5,
        dataset_dir: str | None = None,
        overrides: Any = None,
        parallel: int = 1,
        trust_bundle: bool = False,
        progress: bool = True,
        json: bool = False,
    ) -> None:
        """Train the cross-validation folds of a bundle into models/fold_<k>/ (resumable fold by fold).

        Args:
            bundle: bundle name of this collection or bundle folder.
            folds: number of folds to train (0 .. folds-1; the bundles deal their training data into 5, fewer when
                there are fewer training items; more folds than the datalist holds are refused before any training).
            dataset_dir: the data set (default: the bundle's embedded data).
            overrides: JSON object of training config overrides, e.g. '{"quick_epochs": 20}'.
            parallel: folds trained at once (one per GPU when GPUs exist).
            trust_bundle: allow a bundle folder from outside this collection (its configs run code).
            progress: show a progress bar over the folds.
            json: print the fold runs as JSON.
        """
        from .inference.folds import train_folds

        runs = train_folds(
            bundle,
            folds,
            dataset_dir=dataset_dir,
            overrides=_overrides(overrides),
            parallel=parallel,
            trust_bundle=trust_bundle,
            progress=progress,
        )
        if json:
            _out(_json.dumps([r.as_dict() for r in runs], indent=2))
        else:
            for r in runs:
                _out(f"fold {r.fold}: {r.status:8s} {r.seconds:7.1f} s  {r.folder}  (log {r.log})")
                if r.reason:
                    _out(f"        {r.reason}")
        self._exit_code = 1 if any(r.status == "failed" for r in runs) else 0

    def experiment(
        self,
        bundle: str,
        rows: Any = None,
        epochs: int | None = None,
        dataset_dir: str | None = None,
        out: str | None = None,
        table: str = "table",
        overrides: Any = None,
        eval_overrides: Any = None,
        parallel: int | None = None,
        device: str = "auto",
        precision: str = "auto",
        trust_bundle: bool = False,
        progress: bool = True,
        json: bool = False,
    ) -> None:
        """Train every row of a bundle's table of experiments (configs/experiments/), evaluate each on the same
        validation cases, and write table.md, table.csv, table.png and command.txt (resumable row by row).

        Args:
            bundle: bundle name of this collection or bundle folder.
            rows: comma-separated row ids of the table (default: every row).
            epochs: the same training budget (max_epochs) for every row (default: the bundle's).
            dataset_dir: the data set (default: the bundle's embedded data).
            out: output folder (default: <bundle>/eval/experiments/<table>).
            table: the table in configs/experiments/ (file stem).
            overrides: JSON object of training config overrides for every row, e.g. '{"quick_epochs": 20}'.
            eval_overrides: JSON object of inference config overrides for every row's evaluation.
            parallel: rows trained at once (default: one per GPU, 1 without GPUs).
            device: evaluation device: auto, cpu, cuda or cuda:N.
            precision: evaluation precision: auto (the bundle's), fp32, bf16 or fp16.
            trust_bundle: allow a bundle folder from outside this collection (its configs run code).
            progress: show progress bars.
            json: print the result as JSON.
        """
        import shlex

        from .inference.experiment import run_experiment

        if isinstance(rows, (list, tuple)):
            rows = ",".join(str(r) for r in rows)
        result = run_experiment(
            bundle,
            rows=None if rows is None else str(rows),
            epochs=epochs,
            dataset_dir=dataset_dir,
            out=out,
            table=table,
            overrides=_overrides(overrides),
            eval_overrides=_overrides(eval_overrides),
            parallel=parallel,
            device=device,
            precision=precision,
            trust_bundle=trust_bundle,
            progress=progress,
            command_line=shlex.join(["attnseg", *self._argv]) if self._argv else None,
        )
        if json:
            _out(_json.dumps(result.as_dict(), indent=2, default=str))
        else:
            _out(result.table_md.read_text(encoding="utf-8"))
            lines = [f"attnseg experiment: {result.out_dir}"]
            lines += [f"  {r.id:16s} {r.status:10s} {r.seconds:8.1f} s  {r.reason or ''}" for r in result.rows]
            lines += [f"  table: {result.table_md}, {result.table_csv}"]
            lines += [f"  plot:  {result.plot or result.plot_message}", f"  command: {result.command_txt}"]
            _out("\n".join(lines))
        self._exit_code = 0 if result.ok else 1

    def rank(self, output: str, by: str = "entropy", json: bool = False) -> None:
        """List the cases of an attnseg infer output folder from most to least uncertain (review/annotate first).

        Args:
            output: an output folder of attnseg infer run with --save_uncertainty.
            by: entropy (mean normalised entropy) or mutual_information (needs --tta or an ensemble).
            json: print JSON.
        """
        from .inference.rank import rank_cases

        rows = rank_cases(output, by=by)
        if json:
            _out(_json.dumps(rows, indent=2))
            return
        _out(f"{'RANK':>4}  {by.upper():>18}  CASE  (INPUT)")
        for r in rows:
            _out(f"{r['rank']:>4}  {r['score']:>18.4f}  {r['case']}  ({r['input']})")

    def evaluate(
        self,
        pred_dir: str,
        label_dir: str,
        bundle: str | None = None,
        num_classes: int | None = None,
        metrics: Any = None,
        pred_postfix: str | None = None,
        output_dir: str | None = None,
        include_background: bool = False,
        regions: Any = None,
        label_mapping: str = "none",
        json: bool = False,
    ) -> None:
        """Score predictions against labels: per-case CSV and a summary (mean, std, per class or region).

        Args:
            pred_dir: folder of predictions (e.g. the output of attnseg infer).
            label_dir: folder of reference label maps.
            bundle: bundle whose task sets the metrics, classes and which output to read.
            num_classes: classes including background (needed without --bundle).
            metrics: comma-separated metrics (dice,iou,hd95,hd,asd,aji,pq,mpa,miou,mean_dice,acc).
            pred_postfix: read only <case>_<postfix>.* predictions.
            output_dir: where metrics.csv, summary.csv and summary.json go (default <pred_dir>/evaluation).
            include_background: score class 0 too.
            regions: JSON object of regions scored instead of the classes, each a union of class values, e.g.
                '{"disc": [1, 2], "cup": [2]}' (nested structures).
            label_mapping: none (label values are classes) or btcv (raw BTCV organ ids 0..13 mapped to the 8 Synapse
                classes, for danie).
            json: print the summary as JSON.
        """
        from .inference.evaluate import evaluate_folders

        if isinstance(metrics, (list, tuple)):
            metrics = ",".join(str(m) for m in metrics)
        result = evaluate_folders(
            pred_dir,
            label_dir,
            bundle=bundle,
            num_classes=num_classes,
            metrics=metrics,
            pred_postfix=pred_postfix,
            output_dir=output_dir,
            include_background=include_background,
            regions=_overrides(regions, "--regions", '{"disc": [1, 2], "cup": [2]}'),
            label_mapping=label_mapping,
        )
        summary = result.summary
        if json:
            from .inference.evaluate import _jsonable

            _out(_json.dumps(_jsonable(summary), indent=2))
        else:
            lines = [
                f"attnseg evaluate: {summary['evaluated']} case(s) scored, {summary['failed']} failed",
                f"  per case: {result.per_case_csv}",
                f"  summary:  {result.summary_csv}",
            ]
            for name, s in summary["metrics"].items():
                lines.append(f"  {name:24s} mean {_fmt(s['mean'])}  std {_fmt(s['std'])}  (n={s['count']})")
            for name, v in summary["dataset"].items():
                lines.append(f"  {name + ' (pooled)':24s} {_fmt(v)}")
            if result.failures:
                lines.append("  FAILED:")
                lines += [f"    {f['case']}: {f['error']}" for f in result.failures]
            _out("\n".join(lines))
        self._exit_code = 0 if result.ok else 1

    def export(
        self,
        bundle: str,
        dest: str,
        checkpoint: str | None = None,
        zip: bool = False,  # noqa: A002 - the CLI's option name
        trust_bundle: bool = False,
    ) -> None:
        """Write a self-contained copy of a bundle: configs, docs, licences and, when trained, its model + record.

        The copy runs with ``python -m monai.bundle run --config_file <dest>/configs/inference.json`` and loads in
        MONAI Label's monaibundle app wherever this package is installed (no checkout needed).

        Args:
            bundle: bundle name of this collection or bundle folder.
            dest: the folder to create (must not exist or be empty); with --zip, the zip file (.zip is added).
            checkpoint: weights to include instead of the bundle's models/model.pt (its record comes along; without
                a record they must load strictly into the network the bundle's inference.json builds).
            zip: write a MONAI bundle zip (``<name>/...`` inside) instead of a folder.
            trust_bundle: allow checking a checkpoint without a record against a bundle folder from outside this
                collection (its configs run code).
        """
        from .inference.export import export_bundle

        written = export_bundle(bundle, dest, checkpoint=checkpoint, as_zip=zip, trust_bundle=trust_bundle)
        _out(f"attnseg export: {written}")


def _declare_infer_settings() -> None:
    """Give ``AttnsegCLI.infer`` the settings of :mod:`attnseg_monai.inference.options` as its flags: python-fire
    reads the signature (flag names, defaults) and the docstring's ``Args:`` (help texts), both generated from the
    settings' fields, so each setting is declared once."""
    from .inference.options import cli_help, cli_parameters

    fn = AttnsegCLI.infer
    sig = inspect.signature(fn)
    fixed = [p for p in sig.parameters.values() if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    json_flag = inspect.Parameter("json", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=False, annotation=bool)
    fn.__signature__ = sig.replace(parameters=[*fixed, *cli_parameters(), json_flag])
    head, tail = fn.__doc__.split("json: print the summary as JSON.")
    indent = " " * 12
    fn.__doc__ = f"{head.rstrip()}\n{cli_help(indent=indent)}\n{indent}json: print the summary as JSON.{tail}"


_declare_infer_settings()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``attnseg`` command line; returns the exit code (0 ok, 1 some cases failed, 2 could not run)."""
    import fire

    from .inference.errors import BundleError, CheckpointError, InputError

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cli = AttnsegCLI()
    args = list(sys.argv[1:] if argv is None else argv)
    cli._argv = args
    try:
        fire.Fire(cli, command=args, name="attnseg")
    except fire.core.FireExit as exc:
        return int(exc.code or 0)
    except (BundleError, CheckpointError, InputError, ValueError, FileNotFoundError, RuntimeError) as exc:
        logger.error("%s", exc)
        return 2
    return cli._exit_code
