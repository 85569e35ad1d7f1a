"""Reading a run directory written by `jaxprune.pipeline.run` (and the extras of
``experiments/``), for the report, the figures and the analyses.

Layout (pipeline): ``results.json``, ``config.json``, ``report.md`` and per seed ``seed_K/``
with ``dense.npz`` (``le``, ``risk``, ``train_accuracy_history``, ``params_i`` / ``init_i``
leaves...), ``analysis.npz`` (``mask_<name>`` flat keep arrays, ``pmin_<method>``...),
``retrain_<name>.json`` and ``retrained_<name>.npz`` (written by `save_retrained`: the
retrained sparse net's kernels ``kernel_<layer>``, biases ``bias_<layer>`` (runs from before
they were saved lack them; `jaxprune.export` needs them) and its per-epoch
``train_accuracy_history`` / ``loss_history``; runs from before it was written lack the file).

``run.json`` is the run's fingerprint (config, seeds, data set name, sha256 of the data arrays,
package version), written before any stage: `check_run_dir` refuses to resume a run made from
anything else and to start a fresh run over a used directory unless told to overwrite it
(docs/run_directory.md).

Every loader returns None (or skips) when a file is missing, so reports degrade gracefully; a
file that exists but cannot be read raises `CorruptFileError` naming it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil
import zipfile
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxprune.weights import flatten_kernels, kernel_layout, key_name

RUN_FILE = "run.json"
# orbax checkpoints of the populations of a run (`jaxprune.population.PopulationTrainer.fit`):
# ``retrain/`` (every seed's masks) and ``curves/``; removed when a population has finished
POPULATION_CHECKPOINTS = "ckpt_populations"
# Top-level files a `jaxprune run` writes; `clear_run_dir` removes them (and every seed_K/).
RUN_OUTPUTS = (
    "run.json",
    "config.json",
    "results.json",
    "report.md",
    "analyses.json",
    "verify.json",
    "figures",
    POPULATION_CHECKPOINTS,
)


class CorruptFileError(ValueError):
    """A run-directory file that exists but cannot be read (truncated, bad CRC, bad JSON)."""


class RunDirError(ValueError):
    """A run directory that holds another run (or cannot be written)."""


def json_safe(obj):
    """`obj` with NaN / inf floats as None and numpy scalars / arrays as Python values, so
    ``json.dumps(..., allow_nan=False)`` always succeeds (bare ``NaN`` is not JSON)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    return obj


def _json_default(o):
    """Other objects (jax arrays, 0-d arrays, paths...): as numbers when they are, else text."""
    try:
        a = np.asarray(o)
    except Exception:  # noqa: BLE001 - anything that is not array-like is written as text
        return str(o)
    return json_safe(a.tolist()) if a.dtype.kind in "biuf" else str(o)


def write_json(path, obj) -> None:
    """Write `obj` as strict JSON (NaN -> null), atomically (a killed run leaves no half file)."""
    path = Path(path)
    text = json.dumps(json_safe(obj), indent=2, allow_nan=False, default=_json_default)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def read_json(path):
    """The JSON file at `path`, None when missing; `CorruptFileError` naming it when unreadable."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, OSError) as err:
        raise CorruptFileError(f"{path} is corrupt or not JSON ({err}); delete it or rerun with --overwrite") from err


def load_results(run_dir) -> dict | None:
    return read_json(Path(run_dir) / "results.json")


# ------------------------------------------------------------------------------ run data
# Everything the report, the figures and the analyses read from a run directory, loaded once by
# `load_run_data` into plain arrays; they never open a file while rendering.

# retrained nets looked for in every seed (the pipeline's run names and the studies' extras)
RETRAINED_NAMES = ("dense", "legcnet_ft", "legcnet_pt", "random", "magnitude", "random_pt", "magnitude_pt")
# the parts of dense.npz the report uses (its LE series is read for one seed only, and the
# trajectory samples not at all: they are the file's bulk)
DENSE_REPORT_KEYS = ("risk", "train_accuracy_history")
DENSE_LEAF_PREFIXES = ("params_", "init_")


@dataclasses.dataclass(frozen=True)
class SeedData:
    """One seed's arrays from ``seed_K/`` (None / empty where a file is missing or unreadable).

    Attributes:
      seed: the seed K.
      dense: from ``dense.npz``: ``risk`` ``(n_windows,)``, ``train_accuracy_history``
        ``(epochs,)`` and the params / initial params leaves ``params_i`` / ``init_i`` in pytree
        order (the LE series is `RunData.le`); None when there is no readable file.
      analysis: ``analysis.npz`` whole: ``mask_<name>`` flat keep ``(n_weights,)`` bool,
        ``pmin_<method>`` ``(n_weights,)`` float...; None when there is no readable file.
      retrained: run name -> `load_retrained`'s dict (``kernels`` per layer
        ``(fan_in, fan_out)``, ``biases``, ``train_accuracy_history`` ``(epochs,)``...), for the
        ``retrained_<name>.npz`` files present.
    """

    seed: int
    dense: dict | None
    analysis: dict | None
    retrained: dict

    def masks(self) -> dict[str, np.ndarray]:
        """``{name: flat keep (n_weights,) bool}`` from ``analysis.npz`` (empty without it)."""
        return {
            k[len("mask_") :]: np.asarray(v, bool) for k, v in (self.analysis or {}).items() if k.startswith("mask_")
        }

    def pmin(self, method: str) -> np.ndarray | None:
        """The min-over-lags p-values ``(n_weights,)`` of `method` (``legcnet_ft`` / ``_pt``)."""
        a = self.analysis or {}
        return None if f"pmin_{method}" not in a else np.asarray(a[f"pmin_{method}"], float)

    def kernels(self, sizes, prefix: str = "params") -> list[np.ndarray] | None:
        """The dense net's kernels (``prefix="init"``: the initial ones), one ``(fan_in,
        fan_out)`` array per layer, checked against the layer sizes; None if unavailable."""
        return None if self.dense is None else kernels_from_leaves(self.dense, prefix, sizes)


@dataclasses.dataclass(frozen=True)
class RunData:
    """A finished run in memory: ``results.json`` and the per-seed arrays of its directory.

    Attributes:
      results: the results dict (see `jaxprune.pipeline.run`).
      seeds: seed -> `SeedData`, in the order of ``results["seeds"]``.
      le: the windowed LE series of `le_seed`, ``(n_windows, n_weights)`` float (NaN: no
        estimate); None when its ``dense.npz`` is missing or has none.
      le_seed: the seed of `le` (the first seed), None for a run without seeds.
      run_dir: the directory it was loaded from (None for data built in memory); the parts of
        the report owned by other modules (null controls, deployment) still read it.
      missing: expected files that are not there, relative to `run_dir` (``seed_0/dense.npz``,
        ``seed_1/retrained_random.npz``...).
      errors: relative path -> message for files that exist but could not be read
        (`CorruptFileError`); they count as absent, and whatever needs them reports the message.
    """

    results: dict
    seeds: dict[int, SeedData]
    le: np.ndarray | None = None
    le_seed: int | None = None
    run_dir: Path | None = None
    missing: tuple[str, ...] = ()
    errors: dict[str, str] = dataclasses.field(default_factory=dict)

    def check(self, seed: int, filename: str) -> None:
        """Raise `CorruptFileError` (with the loader's message) when ``seed_K/<filename>``
        could not be read, so that a part needing it reports why, as if it had read it."""
        msg = self.errors.get(f"seed_{int(seed)}/{filename}")
        if msg is not None:
            raise CorruptFileError(msg)

    def masks(self) -> dict[int, dict[str, np.ndarray]]:
        """``{seed: {name: flat keep array}}`` for the seeds that have ``analysis.npz`` (as
        `load_masks`)."""
        return {s: d.masks() for s, d in self.seeds.items() if d.analysis is not None}


def _read_npz(path: Path, want) -> dict | None:
    """The members of an ``.npz`` whose names pass `want` (a predicate); None when missing,
    `CorruptFileError` naming the file when it cannot be read."""
    if not path.exists():
        return None
    try:
        with np.load(path) as f:
            return {k: f[k] for k in f.files if want(k)}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        raise CorruptFileError(
            f"{path} is corrupt or truncated ({err}); delete it (a resumed run recomputes it) or rerun with --overwrite"
        ) from err


def load_run_data(run_dir, results: dict | None = None) -> RunData:
    """Read a run directory once for the report, the figures and the analyses.

    Args:
      run_dir: a directory written by `jaxprune.pipeline.run` (or a study of ``experiments/``).
      results: its results dict when already in memory; None = read ``results.json``.

    Returns:
      a `RunData`; a missing per-seed file is listed in ``missing`` and an unreadable one in
      ``errors`` (never raised here). Raises `FileNotFoundError` when there is no results dict
      and no ``results.json``.
    """
    run_dir = Path(run_dir)
    if results is None:
        results = load_results(run_dir)
        if results is None:
            raise FileNotFoundError(f"no results.json in {run_dir}: not a finished run directory")
    seeds = [int(s) for s in results.get("seeds", [])]
    expected = set(run_names(results)) if results.get("runs") else set()
    names = list(RETRAINED_NAMES) + sorted(expected - set(RETRAINED_NAMES))
    missing: list[str] = []
    errors: dict[str, str] = {}

    def read(rel: str, loader, expected_file: bool = True):
        try:
            out = loader()
        except CorruptFileError as err:
            errors[rel] = str(err)
            return None
        if out is None and expected_file:
            missing.append(rel)
        return out

    per_seed: dict[int, SeedData] = {}
    le = None
    for s in seeds:
        d = seed_dir(run_dir, s)
        keys = DENSE_REPORT_KEYS + (("le",) if s == seeds[0] else ())  # LE: first seed only
        dense = read(
            f"seed_{s}/dense.npz",
            lambda d=d, keys=keys: _read_npz(d / "dense.npz", lambda k: k in keys or k.startswith(DENSE_LEAF_PREFIXES)),
        )
        if dense is not None and "le" in dense:
            le = np.asarray(dense.pop("le"), float)
        analysis = read(f"seed_{s}/analysis.npz", lambda d=d: _read_npz(d / "analysis.npz", lambda k: True))
        retrained = {}
        for name in names:
            r = read(
                f"seed_{s}/retrained_{name}.npz",
                lambda s=s, name=name: load_retrained(run_dir, s, name),
                name in expected,
            )
            if r is not None:
                retrained[name] = r
        per_seed[s] = SeedData(seed=s, dense=dense, analysis=analysis, retrained=retrained)
    return RunData(
        results=results,
        seeds=per_seed,
        le=le,
        le_seed=seeds[0] if seeds else None,
        run_dir=run_dir,
        missing=tuple(missing),
        errors=errors,
    )


# ------------------------------------------------------------------------------ fingerprint
def data_digest(dataset) -> str:
    """sha256 over a `jaxprune.data.Dataset`'s split arrays (``x_train``, ``y_train``,
    ``x_test``, ``y_test``): the same name with other content (an edited CSV) differs."""
    h = hashlib.sha256()
    for key in ("x_train", "y_train", "x_test", "y_test"):
        a = np.ascontiguousarray(getattr(dataset, key))
        h.update(f"{key}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def make_fingerprint(config: dict, seeds, dataset, *, kind: str = "run") -> dict:
    """The run's identity: ``kind``, config dict, seeds, data set name and digest, package
    version; ``digest`` is the sha256 of all of them (stage files carry it)."""
    from jaxprune import __version__

    fp = {
        "kind": kind,
        "version": __version__,
        "dataset": dataset.name,
        "data_sha256": data_digest(dataset),
        "seeds": [int(s) for s in seeds],
        "config": json_safe(config),
    }
    fp["digest"] = hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()
    return fp


def differing_fields(saved, current, prefix: str = "") -> list[str]:
    """Dotted names of the fields that differ between two fingerprints (or any JSON values)."""
    if isinstance(saved, dict) and isinstance(current, dict):
        out = []
        for k in sorted(set(saved) | set(current)):
            if k == "digest":
                continue
            name = f"{prefix}.{k}" if prefix else str(k)
            if k not in saved or k not in current:
                out.append(name)
            else:
                out += differing_fields(saved[k], current[k], name)
        return out
    return [] if saved == current else [prefix or "(value)"]


def _describe(fp: dict, fields: list[str]) -> str:
    def get(d, dotted):
        for part in dotted.split("."):
            if not isinstance(d, dict) or part not in d:
                return "(absent)"
            d = d[part]
        text = json.dumps(d)
        return text if len(text) <= 40 else text[:37] + "..."

    return ", ".join(f"{f}={get(fp, f)}" for f in fields[:8]) + (
        f" (+{len(fields) - 8} more)" if len(fields) > 8 else ""
    )


def check_writable(out_dir) -> Path:
    """Create `out_dir` if needed and check a file can be written there, before any compute."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise RunDirError(f"--out {out_dir} is an existing file, not a directory")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".jaxprune_write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise RunDirError(f"cannot write to the output directory {out_dir}: {err.strerror or err}") from err
    return out_dir


def is_used(out_dir, names=RUN_OUTPUTS, pattern: str | None = "seed_*") -> bool:
    """Whether `out_dir` holds results of a run: any of `names` but the fingerprint and config
    (a run stopped before its first stage left nothing to mix up) or a ``seed_K/`` folder."""
    out_dir = Path(out_dir)
    skip = {RUN_FILE, "config.json"}
    return out_dir.is_dir() and (
        any((out_dir / n).exists() for n in names if n not in skip)
        or (pattern is not None and any(out_dir.glob(pattern)))
    )


def clear_run_dir(out_dir, names=RUN_OUTPUTS, pattern: str | None = "seed_*") -> list[str]:
    """Remove the files `names` and the folders matching `pattern` (every ``seed_K/``, stale
    ones included); returns what was removed."""
    out_dir = Path(out_dir)
    removed = []
    targets = [out_dir / n for n in names]
    if pattern:
        targets += sorted(out_dir.glob(pattern))
    for p in targets:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()
        else:
            continue
        removed.append(p.name)
    return removed


def check_run_dir(
    out_dir, fingerprint: dict, *, resume: bool, overwrite: bool, names=RUN_OUTPUTS, pattern: str | None = "seed_*"
) -> str:
    """Claim `out_dir` for the run `fingerprint` and write ``run.json`` first.

    resume: the directory must hold ``run.json`` with the same fingerprint (else `RunDirError`
    naming the differing fields); a directory without one starts fresh. Otherwise a used
    directory is refused unless `overwrite`, which removes `names` and every folder matching
    `pattern` (stale seeds included). Returns a one-line note of what was done.
    """
    out_dir = check_writable(out_dir)
    path = out_dir / RUN_FILE
    note = f"new run in {out_dir}"
    if resume and path.exists():
        saved = read_json(path)
        fields = differing_fields(saved, fingerprint)
        if fields:
            raise RunDirError(
                f"{out_dir} holds another run: {_describe(saved, fields)} there, "
                f"{_describe(fingerprint, fields)} now; --resume only continues the same run "
                "(use a new --out, or --overwrite to replace it)"
            )
        return f"resuming the run in {out_dir} (run.json matches)"
    if is_used(out_dir, names, pattern) and not overwrite:
        what = "resume" if resume else "start"
        reason = " (it has no run.json: made by another version or command)" if resume else ""
        raise RunDirError(
            f"{out_dir} already holds a run{reason}; cannot {what} a run there: pass --overwrite "
            "to delete its stages and seed_K/ folders, --resume to continue the same run, or "
            "use a new --out"
        )
    if overwrite:
        removed = clear_run_dir(out_dir, names, pattern)
        if removed:
            note = f"--overwrite: removed {', '.join(removed)} from {out_dir}"
    write_json(path, fingerprint)
    return note


def stage_digest_ok(arrays: dict | None, digest: str) -> bool:
    """Whether a stage file's ``run_digest`` (written by this version) is the run's."""
    return arrays is not None and str(np.asarray(arrays.get("run_digest", ""))) == digest


def layer_sizes(results: dict) -> list[int]:
    """Kernel weights per layer, from the first run record (kept + pruned)."""
    r = results["runs"][0]
    return [int(k) + int(p) for k, p in zip(r["kept_per_layer"], r["pruned_per_layer"])]


def layer_offsets(results: dict) -> list[int]:
    return [0] + [int(v) for v in np.cumsum(layer_sizes(results))]


def analysed_per_layer(results: dict) -> list[int]:
    """Analysed (prunable) weights per layer under the config's layer filter."""
    sizes = layer_sizes(results)
    from jaxprune.config import flat_config_dict

    layers = flat_config_dict(results["config"]).get("layers")
    if layers is None:
        return sizes
    chosen = {int(i) % len(sizes) for i in layers}
    return [s if i in chosen else 0 for i, s in enumerate(sizes)]


def seed_dir(run_dir, seed: int) -> Path:
    return Path(run_dir) / f"seed_{int(seed)}"


def load_npz(path, keys=None) -> dict | None:
    """An ``.npz`` as a dict (only `keys` when given); None when missing, `CorruptFileError`
    naming the file when it is truncated or fails its CRC."""
    return _read_npz(Path(path), lambda k: keys is None or k in keys)


def load_dense(run_dir, seed: int, keys=None) -> dict | None:
    """``seed_K/dense.npz`` as a dict (only `keys` when given)."""
    return load_npz(seed_dir(run_dir, seed) / "dense.npz", keys)


def load_analysis(run_dir, seed: int) -> dict | None:
    return load_npz(seed_dir(run_dir, seed) / "analysis.npz")


def load_masks(run_dir, seeds) -> dict[int, dict[str, np.ndarray]]:
    """``{seed: {name: flat keep array}}`` for the seeds that have ``analysis.npz``."""
    out = {}
    for s in seeds:
        a = load_analysis(run_dir, s)
        if a is not None:
            out[int(s)] = {k[len("mask_") :]: np.asarray(v, bool) for k, v in a.items() if k.startswith("mask_")}
    return out


def kernels_from_leaves(arrays: dict, prefix: str, sizes) -> list[np.ndarray] | None:
    """The 2-D leaves ``<prefix>_i`` in leaf order, checked against the layer sizes."""
    idx = sorted(
        int(k[len(prefix) + 1 :]) for k in arrays if k.startswith(prefix + "_") and k[len(prefix) + 1 :].isdigit()
    )
    kernels = [np.asarray(arrays[f"{prefix}_{i}"]) for i in idx if np.ndim(arrays[f"{prefix}_{i}"]) == 2]
    if [k.size for k in kernels] != list(sizes):
        return None
    return kernels


def dense_kernels(run_dir, seed: int, sizes, prefix: str = "params") -> list[np.ndarray] | None:
    """The trained dense net's kernels (or the initial ones with ``prefix="init"``)."""
    d = load_dense(run_dir, seed)
    return None if d is None else kernels_from_leaves(d, prefix, sizes)


def retrained_path(run_dir, seed: int, name: str) -> Path:
    return seed_dir(run_dir, seed) / f"retrained_{name}.npz"


def _plain_names(path) -> tuple:
    names = tuple(key_name(k) for k in path)
    return names[:-1] if names and names[-1] == "value" else names


def bias_arrays(params: Any) -> list[np.ndarray | None]:
    """The bias next to each kernel (same key path with ``"bias"`` for ``"kernel"``), in the
    flat-axis layer order; None for a layer without one. Shapes ``(fan_out,)``."""
    leaves = {_plain_names(p): leaf for p, leaf in jax.tree_util.tree_flatten_with_path(params)[0]}
    return [
        None if (b := leaves.get(_plain_names(k)[:-1] + ("bias",))) is None else np.asarray(b)
        for k in kernel_layout(params).paths
    ]


def save_retrained(run_dir, seed: int, name: str, params: Any, history: dict, record: dict | None = None) -> Path:
    """Write ``seed_K/retrained_<name>.npz``: kernels (``kernel_<l>``, ``(fan_in, fan_out)``,
    in the flat-axis layer order) and biases (``bias_<l>``, ``(fan_out,)``) of the retrained net
    and its per-epoch training history."""
    layout = kernel_layout(params)
    flat = np.asarray(flatten_kernels(params))
    arrays = {f"kernel_{i}": flat[layout.layer_slice(i)].reshape(shape) for i, shape in enumerate(layout.shapes)}
    for i, b in enumerate(bias_arrays(params)):
        if b is not None:
            arrays[f"bias_{i}"] = b
    arrays["train_accuracy_history"] = np.asarray(history.get("train_accuracy", []), float)
    arrays["loss_history"] = np.asarray(history.get("loss", []), float)
    if record is not None:
        arrays["test_accuracy"] = np.float64(record["test_accuracy"])
    path = retrained_path(run_dir, seed, name)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)
    return path


def load_retrained(run_dir, seed: int, name: str) -> dict | None:
    """``{"kernels": [...], "biases": [...] or None, "train_accuracy_history": ..., ...}`` or
    None when not saved; ``biases`` is None for runs saved before biases were (and a layer
    without a bias has None in the list)."""
    d = load_npz(retrained_path(run_dir, seed, name))
    if d is None:
        return None
    n = sum(1 for k in d if k.startswith("kernel_"))
    out = {k: v for k, v in d.items() if not k.startswith(("kernel_", "bias_"))}
    out["kernels"] = [d[f"kernel_{i}"] for i in range(n)]
    has_bias = any(k.startswith("bias_") for k in d)
    out["biases"] = [d.get(f"bias_{i}") for i in range(n)] if has_bias else None
    return out


def run_names(results: dict) -> list[str]:
    """The run names present (``dense``, ``legcnet_ft``, ``random_pt``...) in a stable order."""
    order = ("dense", "legcnet_ft", "legcnet_pt", "random", "magnitude", "random_pt", "magnitude_pt")
    names = {r.get("name", r["method"]) for r in results["runs"]}
    return [n for n in order if n in names] + sorted(names - set(order))


# ------------------------------------------------------------------------------ stage files
# Every file the pipeline's stages write or read (dense.npz, analysis.npz, a `jaxprune train`
# directory), so that `jaxprune.pipeline` and `jaxprune.select` compute without touching disk.
def make_seed_dir(run_dir, seed: int) -> Path:
    """``run_dir/seed_K/``, created if needed."""
    path = seed_dir(run_dir, seed)
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_npz(path, **arrays) -> None:
    """Write ``.npz`` `arrays` atomically (a killed run never leaves a half-written stage file)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


def save_dense(path, dense) -> None:
    """Write a `jaxprune.stages.DenseRun` as ``dense.npz`` (its `to_arrays` keys)."""
    save_npz(path, **dense.to_arrays())


def load_dense_run(path, digest: str | None = None):
    """``dense.npz`` at `path` as a `jaxprune.stages.DenseRun`; None when missing, or when
    `digest` is given and the file's ``run_digest`` is another (another run's stage)."""
    from jaxprune.stages import DenseRun

    arrays = load_npz(path)
    if arrays is None or (digest is not None and not stage_digest_ok(arrays, digest)):
        return None
    return DenseRun.from_arrays(arrays)


def discard_checkpoints(path) -> None:
    """Remove a checkpoint folder (a fresh stage never continues another run's checkpoints)."""
    path = Path(path)
    if path.exists():
        shutil.rmtree(path)


def discard_population_checkpoints(out_dir, name: str) -> None:
    """Remove ``out_dir/ckpt_populations/<name>`` (a finished or a fresh population), and the
    ``ckpt_populations`` folder once it is empty."""
    root = Path(out_dir) / POPULATION_CHECKPOINTS
    discard_checkpoints(root / name)
    if root.is_dir() and not any(root.iterdir()):
        root.rmdir()


def analysis_arrays(analysis, *, maxlag: bool = True) -> dict:
    """``analysis.npz``'s arrays of a `jaxprune.select.Analysis`: ``mask_<name>`` flat keep
    arrays ``(n_weights,)`` of every mask, ``pmin_<method>`` / ``status_<method>`` /
    ``minstat_<method>`` ``(n_weights,)``, ``lagp_<method>`` ``(n_weights, maxlag_used)`` and
    (with `maxlag`) ``maxlag_<method>`` of each Granger outcome."""
    from jaxprune.prune import flat_keep

    arrays = {f"mask_{name}": flat_keep(mask) for name, mask in analysis.masks.items()}
    for name, g in analysis.granger.items():
        arrays[f"pmin_{name}"] = g.pmin
        arrays[f"status_{name}"] = g.status
        # the rest of the outcome, so that the controls stage reuses it instead of re-testing
        arrays[f"lagp_{name}"] = g.lag_pvalues
        if g.min_statistic is not None:
            arrays[f"minstat_{name}"] = g.min_statistic
        if maxlag:
            arrays[f"maxlag_{name}"] = np.int64(g.maxlag_used)
    return arrays


def save_analysis(path, analysis) -> None:
    """``seed_K/analysis.npz`` of a `jaxprune run` (`analysis_arrays`)."""
    save_npz(path, **analysis_arrays(analysis))


def reuse_dense(src_dir, out_dir, seed: int, digest: str) -> None:
    """Copy ``seed_K/dense.npz`` from another run directory when its stage digest is `digest`
    (computed from the same inputs) and out_dir has none yet."""
    src = seed_dir(src_dir, seed) / "dense.npz"
    dst = seed_dir(out_dir, seed) / "dense.npz"
    if dst.exists() or not src.exists():
        return
    if stage_digest_ok(load_npz(src, keys=("run_digest",)), digest):
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)


def read_train_dir(run_dir) -> tuple[dict, dict]:
    """``(metrics.json, windows.npz arrays)`` of a `jaxprune train` directory, with errors
    naming what is missing."""
    run_dir = Path(run_dir)
    metrics_path = run_dir / "metrics.json"
    if not metrics_path.exists():
        raise FileNotFoundError(f"{run_dir} holds no metrics.json: not a `jaxprune train` directory")
    meta = read_json(metrics_path)
    windows = load_npz(run_dir / "windows.npz")
    if windows is None:
        raise FileNotFoundError(f"{run_dir} holds no windows.npz: not a finished `jaxprune train`")
    return meta, windows


def load_trajectory(run_dir) -> np.ndarray:
    """``trajectory.npy`` of a `jaxprune train --keep-trajectory` directory, memory-mapped
    ``(steps, n_weights)``."""
    traj_path = Path(run_dir) / "trajectory.npy"
    if not traj_path.exists():
        raise FileNotFoundError(
            f"{run_dir} has neither recorded LE series nor trajectory.npy: train with "
            "--le-mode parity|fast or --keep-trajectory, or use `jaxprune run`"
        )
    return np.load(traj_path, mmap_mode="r")


def save_train_analysis(run_dir, analysis, summary: dict) -> None:
    """A `jaxprune analyze` result into its train directory: ``analysis.npz`` (flat keep masks,
    p-values, statuses) and ``analysis.json`` (`summary`)."""
    run_dir = Path(run_dir)
    save_npz(run_dir / "analysis.npz", **analysis_arrays(analysis, maxlag=False))
    write_json(run_dir / "analysis.json", summary)
