"""From a pruning mask to a smaller model on disk: structural compaction, a sparse encoding and
the forward pass serialised with `jax.export` (StableHLO).

``export_run(RUN, "magnitude", out=DIR)`` (the ``jaxprune export`` command) takes the retrained
net of one method and seed of a run directory (``seed_K/retrained_<name>.npz``: kernels and
biases; ``seed_K/analysis.npz``: the mask) and writes into DIR:

* ``params.npz``: the compact dense net (`compact`): ``input_index`` (when some input features
  feed nothing), ``kernel_<l>`` ``(n_in_l', n_out_l')`` and ``bias_<l>`` ``(n_out_l',)``, float32;
* ``sparse.npz``: the same kernels in the smallest of three encodings per layer (`encode_kernel`);
* ``model.jaxexport``: ``jax.export`` serialisation of ``f(x, *params) -> scores`` with a symbolic
  batch dimension (CPU, CUDA and TPU lowerings), and ``model.stablehlo.mlir``, its StableHLO text;
* ``manifest.json``: widths, parameter counts, bytes, FLOPs, measured latency and the check that
  the exported model predicts what the masked retrained net predicts on the run's test split.

`load` reads such a directory back with only numpy and jax: it imports none of jaxprune's
training code (flax, optax, orbax), so the directory is the whole deployable model.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PARAMS = "params.npz"
SPARSE = "sparse.npz"
MODEL = "model.jaxexport"
MLIR = "model.stablehlo.mlir"
EXPORT_METHODS = ("legcnet_ft", "legcnet_pt", "magnitude", "random", "dense", "magnitude_pt", "random_pt")
PLATFORMS = ("cpu", "cuda", "tpu")
SPARSE_FORMATS = ("dense", "bitmask", "coo")
# The masked net and the exported one sum the same float32 products in another order, and a
# folded constant unit is summed in float64 once: differences are a few float32 ulps of the score.
RTOL, ATOL = 1e-4, 1e-5


def _activation(name: str) -> Callable[[jax.Array], jax.Array]:
    # Same functions as jaxprune.models.ACTIVATIONS; not imported from there because that
    # module pulls in flax and optax.
    table = {"sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh, "relu": jax.nn.relu}
    if name not in table:
        raise ValueError(f"activation must be one of {sorted(table)}, got {name!r}")
    return table[name]


# ------------------------------------------------------------------------------ compaction
@dataclasses.dataclass(frozen=True)
class CompactNet:
    """A dense MLP with smaller widths that computes what the masked net computes.

    Attributes:
      kernels: ``kernel_l`` of shape ``(n_in_l', n_out_l')`` float32 (pruned entries are 0).
      biases: ``bias_l`` of shape ``(n_out_l',)`` float32, with folded constants added.
      input_index: ``(n_in_0',)`` int32, the input features that still feed a unit.
      keep: per kernel, ``(n_in_l', n_out_l')`` bool, the mask restricted to the kept units.
      original_widths: ``(n_features, h_1, ..., n_out)``.
      kept_units: per hidden layer, the original indices of its surviving units.
      folded_units: per hidden layer, the units with no input left (a constant act(bias)) whose
        contribution was folded into the next layer's bias.
      unused_units: per hidden layer, the other dropped units (no output left).
      activation: the hidden nonlinearity's name.
    """

    kernels: tuple
    biases: tuple
    input_index: np.ndarray
    keep: tuple
    original_widths: tuple
    kept_units: tuple
    folded_units: tuple
    unused_units: tuple
    activation: str

    @property
    def widths(self) -> tuple[int, ...]:
        """``(inputs used, h_1', ..., n_out)``."""
        return (int(self.input_index.size),) + tuple(int(b.size) for b in self.biases)

    def __call__(self, x) -> jax.Array:
        """Scores ``(batch, n_out)`` for inputs ``(batch, n_features)`` (all features)."""
        return compact_forward(self.activation)(jnp.asarray(x, jnp.float32), *self.program_arguments())

    def argument_names(self) -> list[str]:
        """Names of the stored arrays (``params.npz``), in the order of `arguments`."""
        names = [] if self.all_inputs_used else ["input_index"]
        for i in range(len(self.kernels)):
            names += [f"kernel_{i}", f"bias_{i}"]
        return names

    def arguments(self) -> list[np.ndarray]:
        """The stored arrays: the compact kernels and biases (and the input index)."""
        args = [] if self.all_inputs_used else [self.input_index]
        for k, b in zip(self.kernels, self.biases):
            args += [k, b]
        return args

    def program_arguments(self) -> list[np.ndarray]:
        """What the forward pass takes after ``x``: see `input_mode` and `program_arguments`."""
        return program_arguments(
            dict(zip(self.argument_names(), self.arguments())), self.input_mode, int(self.original_widths[0])
        )

    @property
    def all_inputs_used(self) -> bool:
        return int(self.input_index.size) == int(self.original_widths[0])

    @property
    def input_mode(self) -> str:
        """How the forward pass skips unused inputs: ``all`` (none unused); ``gather`` (read
        only the used columns of x: pays when at most half are used); ``expand`` (multiply all
        of x by a first kernel with zero rows for the unused inputs, rebuilt once at load time:
        a column gather costs XLA:CPU about as much as the matmul it would save)."""
        if self.all_inputs_used:
            return "all"
        return "gather" if 2 * self.input_index.size <= self.original_widths[0] else "expand"


def program_arguments(stored: dict[str, np.ndarray], input_mode: str, n_features: int) -> list[np.ndarray]:
    """The forward pass's arguments after ``x`` from the stored arrays (``params.npz``):
    ``[input_index]`` for ``gather``, then ``kernel_0, bias_0, ...``; for ``expand`` the first
    kernel becomes ``(n_features, n_out_0')`` with zero rows for the unused inputs."""
    n = sum(1 for k in stored if k.startswith("bias_"))
    args = [stored["input_index"]] if input_mode == "gather" else []
    for i in range(n):
        k = stored[f"kernel_{i}"]
        if i == 0 and input_mode == "expand":
            full = np.zeros((n_features, k.shape[1]), k.dtype)
            full[stored["input_index"]] = k
            k = full
        args += [k, stored[f"bias_{i}"]]
    return args


def compact(
    kernels: Sequence[np.ndarray], biases: Sequence[np.ndarray], keep: Sequence[np.ndarray], activation: str = "sigmoid"
) -> CompactNet:
    """Drop the hidden units a mask has disconnected, cascading to a fixpoint.

    Args:
      kernels: per layer ``(n_in_l, n_out_l)``; entries where `keep` is False are ignored (the
        masked net's weights are 0 there).
      biases: per layer ``(n_out_l,)``.
      keep: per layer ``(n_in_l, n_out_l)`` bool, the mask (True = kept).
      activation: hidden nonlinearity (``sigmoid``, ``tanh``, ``relu``).

    Rules, applied until nothing changes (output units are never dropped):

    * a hidden unit with no kept incoming weight outputs the constant ``act(bias)``: its
      outgoing weights times that constant are added to the next layer's bias and the unit is
      dropped (so units fed only by it may lose all their inputs in turn);
    * a hidden unit with no kept outgoing weight is dropped with its incoming weights (so units
      feeding only it may lose all their outputs in turn);
    * an input feature with no kept outgoing weight is not read (``input_index``).
    """
    n = len(kernels)
    if not (len(biases) == len(keep) == n) or n == 0:
        raise ValueError(f"got {len(kernels)} kernels, {len(biases)} biases, {len(keep)} masks")
    widths = [int(np.shape(kernels[0])[0])] + [int(np.shape(k)[1]) for k in kernels]
    for i, (k, b, m) in enumerate(zip(kernels, biases, keep)):
        shape = (widths[i], widths[i + 1])
        if np.shape(k) != shape or np.shape(m) != shape or np.shape(b) != (widths[i + 1],):
            raise ValueError(
                f"layer {i}: kernel {np.shape(k)}, mask {np.shape(m)}, bias "
                f"{np.shape(b)} do not chain as a {widths} MLP"
            )
    act = _activation(activation)
    mask = [np.asarray(m, bool).copy() for m in keep]
    w = [np.where(m, np.asarray(k, np.float64), 0.0) for k, m in zip(kernels, mask)]
    # Constants are computed in float32 by the same activation the masked net uses, then added
    # in float64 once, so the folded bias is as close as float32 allows to the masked net's sum.
    b32 = [np.asarray(b, np.float32) for b in biases]
    b = [v.astype(np.float64) for v in b32]
    alive = [np.ones(wd, bool) for wd in widths]
    folded = [np.zeros(wd, bool) for wd in widths]
    changed = True
    while changed:
        changed = False
        for h in range(1, n):  # hidden layer h: columns of kernel h-1, rows of kernel h
            no_in = alive[h] & ~mask[h - 1].any(axis=0)
            if no_in.any():
                const = np.asarray(act(jnp.asarray(b[h - 1][no_in].astype(np.float32))), np.float64)
                b[h] = b[h] + const @ w[h][no_in]
                folded[h] |= no_in & mask[h].any(axis=1)
                alive[h] &= ~no_in
                mask[h][no_in] = False
                w[h][no_in] = 0.0
                changed = True
            no_out = alive[h] & ~mask[h].any(axis=1)
            if no_out.any():
                alive[h] &= ~no_out
                mask[h - 1][:, no_out] = False
                w[h - 1][:, no_out] = 0.0
                changed = True
    alive[0] = mask[0].any(axis=1)
    ks, bs, ms = [], [], []
    for i in range(n):
        rows, cols = alive[i], alive[i + 1]
        ks.append(w[i][np.ix_(rows, cols)].astype(np.float32))
        bs.append(b[i][cols].astype(np.float32))
        ms.append(mask[i][np.ix_(rows, cols)])
    hidden = range(1, n)
    return CompactNet(
        kernels=tuple(ks),
        biases=tuple(bs),
        input_index=np.flatnonzero(alive[0]).astype(np.int32),
        keep=tuple(ms),
        original_widths=tuple(widths),
        kept_units=tuple(np.flatnonzero(alive[h]) for h in hidden),
        folded_units=tuple(np.flatnonzero(folded[h]) for h in hidden),
        unused_units=tuple(np.flatnonzero(~alive[h] & ~folded[h]) for h in hidden),
        activation=activation,
    )


def masked_forward(activation: str) -> Callable:
    """``f(x, kernels, biases, keep) -> scores``: the masked full-width net, ``x`` ``(batch,
    n_features)`` float32 -> ``(batch, n_out)`` (what `jaxprune.models.MLP` computes)."""
    act = _activation(activation)

    def f(x, kernels, biases, keep):
        for i, (k, b, m) in enumerate(zip(kernels, biases, keep)):
            x = x @ jnp.where(m, k, 0.0) + b
            if i < len(kernels) - 1:
                x = act(x)
        return x

    return f


def compact_forward(activation: str) -> Callable:
    """``f(x, [input_index], kernel_0, bias_0, kernel_1, ...) -> scores``: the compact net's
    forward pass, ``x`` ``(batch, n_features)`` float32 -> ``(batch, n_out)``. The input index
    is there when the argument count is odd (`CompactNet.input_mode` ``gather``)."""
    act = _activation(activation)

    def f(x, *args):
        if len(args) % 2:
            x = jnp.take(x, args[0], axis=1, mode="clip")  # indices are valid: no fill mask
            args = args[1:]
        n = len(args) // 2
        for i in range(n):
            x = x @ args[2 * i] + args[2 * i + 1]
            if i < n - 1:
                x = act(x)
        return x

    return f


# ------------------------------------------------------------------------------ sparse form
def _index_dtype(n: int) -> np.dtype:
    for dt in (np.uint8, np.uint16, np.uint32):
        if n <= np.iinfo(dt).max + 1:
            return np.dtype(dt)
    return np.dtype(np.uint64)


def encoding_bytes(shape: tuple[int, int], nnz: int) -> dict[str, int]:
    """Payload bytes of a float32 ``(n_in, n_out)`` kernel with `nnz` nonzeros, per format:
    ``dense`` (all values), ``bitmask`` (one bit per entry + the nonzero values, row-major) and
    ``coo`` (BCOO layout: ``(nnz, 2)`` row/column indices in the smallest unsigned integer type
    that holds them + the values)."""
    size = int(shape[0]) * int(shape[1])
    ib = _index_dtype(max(shape) if size else 1).itemsize
    return {"dense": 4 * size, "bitmask": (size + 7) // 8 + 4 * nnz, "coo": nnz * (2 * ib + 4)}


def encode_kernel(kernel: np.ndarray) -> dict[str, np.ndarray]:
    """The smallest encoding of a float32 kernel ``(n_in, n_out)`` (ties: the simpler one).

    Returns ``{"format", "shape", ...}``: ``values`` ``(n_in, n_out)`` (dense); ``bits``
    (``ceil(n_in * n_out / 8)`` uint8, `np.packbits` of the row-major nonzero pattern) and
    ``values`` ``(nnz,)`` (bitmask); ``indices`` ``(nnz, 2)`` and ``values`` ``(nnz,)`` (coo,
    the layout of ``jax.experimental.sparse.BCOO``). `decode_kernel` inverts it exactly.
    """
    kernel = np.asarray(kernel, np.float32)
    if kernel.ndim != 2:
        raise ValueError(f"kernel must be 2-D, got shape {kernel.shape}")
    nz = kernel != 0
    sizes = encoding_bytes(kernel.shape, int(nz.sum()))
    fmt = min(SPARSE_FORMATS, key=lambda f: sizes[f])  # min keeps the first of equals
    out = {"format": np.asarray(fmt), "shape": np.asarray(kernel.shape, np.int64)}
    if fmt == "dense":
        out["values"] = kernel
    elif fmt == "bitmask":
        out["bits"] = np.packbits(nz.ravel())
        out["values"] = kernel[nz]
    else:
        out["indices"] = np.argwhere(nz).astype(_index_dtype(max(kernel.shape)))
        out["values"] = kernel[nz]
    return out


def decode_kernel(enc: dict[str, np.ndarray]) -> np.ndarray:
    """The dense float32 kernel ``(n_in, n_out)`` of an `encode_kernel` result."""
    fmt = str(enc["format"])
    shape = tuple(int(s) for s in enc["shape"])
    if fmt == "dense":
        return np.asarray(enc["values"], np.float32).reshape(shape)
    out = np.zeros(shape, np.float32)
    if fmt == "bitmask":
        size = shape[0] * shape[1]
        nz = np.unpackbits(enc["bits"], count=size).astype(bool).reshape(shape)
        out[nz] = enc["values"]
    elif fmt == "coo":
        idx = np.asarray(enc["indices"], np.int64)
        out[idx[:, 0], idx[:, 1]] = enc["values"]
    else:
        raise ValueError(f"unknown kernel format {fmt!r}")
    return out


def payload_bytes(enc: dict[str, np.ndarray]) -> int:
    """Bytes of an encoding's data arrays (not its ``format`` / ``shape`` header)."""
    return int(sum(v.nbytes for k, v in enc.items() if k not in ("format", "shape")))


def save_sparse(path, net: CompactNet) -> list[dict]:
    """Write the compact net's kernels in their smallest encodings (plus biases and the input
    index) to `path` (``.npz``); returns per layer ``{"format", "bytes", "nnz", "shape"}``."""
    arrays, layers = {"input_index": net.input_index}, []
    for i, (k, b) in enumerate(zip(net.kernels, net.biases)):
        enc = encode_kernel(k)
        arrays.update({f"kernel_{i}.{key}": v for key, v in enc.items()})
        arrays[f"bias_{i}"] = b
        layers.append(
            {
                "format": str(enc["format"]),
                "bytes": payload_bytes(enc),
                "nnz": int(np.count_nonzero(k)),
                "shape": list(k.shape),
                "bytes_by_format": encoding_bytes(k.shape, int(np.count_nonzero(k))),
            }
        )
    np.savez(path, **arrays)
    return layers


def load_sparse(path) -> dict[str, list[np.ndarray] | np.ndarray]:
    """``{"kernels": [dense float32...], "biases": [...], "input_index": ...}`` from a
    `save_sparse` file."""
    with np.load(path) as f:
        d = {k: f[k] for k in f.files}
    n = sum(1 for k in d if k.startswith("bias_"))
    kernels = []
    for i in range(n):
        prefix = f"kernel_{i}."
        kernels.append(decode_kernel({k[len(prefix) :]: v for k, v in d.items() if k.startswith(prefix)}))
    return {"kernels": kernels, "biases": [d[f"bias_{i}"] for i in range(n)], "input_index": d["input_index"]}


# ------------------------------------------------------------------------------ load
def load(directory) -> Callable[[np.ndarray], jax.Array]:
    """The exported model of `directory` as ``f(x) -> scores``.

    ``x``: ``(batch, n_features)`` float32 (any batch size; features scaled as the run's data
    set was, see ``manifest["input_scaling"]``); scores ``(batch, n_out)`` are the net's logits
    (class = argmax, or ``score > 0`` for a single output). Needs numpy and jax only. The
    manifest is attached as ``f.manifest``.
    """
    directory = Path(directory)
    for name in (MANIFEST, PARAMS, MODEL):
        if not (directory / name).exists():
            raise FileNotFoundError(f"{directory} holds no {name}: not a `jaxprune export` directory")
    manifest = json.loads((directory / MANIFEST).read_text())
    try:
        exported = jax.export.deserialize(bytearray((directory / MODEL).read_bytes()))
    except ImportError as err:  # jax needs the flatbuffers package to read the file
        raise ImportError(f"{err} (pip install flatbuffers)") from err
    n_features = int(manifest["n_features"])
    with np.load(directory / PARAMS) as f:
        stored = {name: f[name] for name in manifest["arguments"]}
    args = [jnp.asarray(a) for a in program_arguments(stored, manifest.get("input_mode", "all"), n_features)]
    call = jax.jit(exported.call)

    def f(x) -> jax.Array:
        if not (isinstance(x, jax.Array) and x.dtype == jnp.float32):
            x = np.asarray(x, np.float32)  # (jnp.asarray of a device array costs ~70 us a call)
        if x.ndim != 2 or x.shape[1] != n_features:
            raise ValueError(f"x must have shape (batch, {n_features}), got {x.shape}")
        return call(x, *args)

    f.manifest = manifest
    return f


# ------------------------------------------------------------------------------ export
def serialise(net: CompactNet, platforms: Sequence[str] = PLATFORMS):
    """``jax.export.Exported`` of the compact forward pass, batch dimension symbolic."""
    (batch,) = jax.export.symbolic_shape("batch")
    specs = [jax.ShapeDtypeStruct((batch, net.original_widths[0]), jnp.float32)]
    specs += [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in net.program_arguments()]
    return jax.export.export(jax.jit(compact_forward(net.activation)), platforms=tuple(platforms))(*specs)


def write_model(net: CompactNet, out, platforms: Sequence[str] = PLATFORMS) -> None:
    """Write what `load` needs into `out`: ``params.npz``, ``model.jaxexport`` (and its
    StableHLO text) and a minimal ``manifest.json`` (`export_run` completes it)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / PARAMS, **dict(zip(net.argument_names(), net.arguments())))
    exported = serialise(net, platforms)
    try:
        blob = exported.serialize()
    except ImportError as err:  # jax needs the flatbuffers package to write the file
        raise ImportError(f"{err} (pip install flatbuffers)") from err
    (out / MODEL).write_bytes(blob)
    (out / MLIR).write_text(exported.mlir_module())
    (out / MANIFEST).write_text(
        json.dumps(
            {
                "format_version": FORMAT_VERSION,
                "arguments": net.argument_names(),
                "input_mode": net.input_mode,
                "n_features": int(net.original_widths[0]),
            }
        )
    )


def median_latency_ms(fns: dict[str, Callable], x, repeats: int, warmup: int = 3) -> dict[str, float]:
    """Median wall time in ms of ``f(x)`` for each of `fns`, over `repeats` rounds after
    `warmup` calls each (which compile). The functions alternate within each round (in turn
    first), so on a shared machine both see the same load; every call is waited for with
    ``block_until_ready``."""
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            jax.block_until_ready(fns[name](x))
    times = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t0 = time.perf_counter()
            jax.block_until_ready(fns[name](x))
            times[name].append(time.perf_counter() - t0)
    return {name: float(np.median(t) * 1e3) for name, t in times.items()}


def _labels(scores: np.ndarray) -> np.ndarray:
    if scores.shape[-1] == 1:
        return (scores[..., 0] > 0).astype(np.int32)
    return np.argmax(scores, axis=-1).astype(np.int32)


def _flops(nnz, n_bias) -> int:
    """2 FLOPs per multiply-add + 1 per bias entry (`jaxprune.prune.Flops` convention)."""
    return int(sum(2 * m + b for m, b in zip(nnz, n_bias)))


def _load_run_net(run_dir: Path, name: str, seed: int | None):
    """``(results, seed, kernels, biases, keep, record)`` for one retrained net of a run."""
    from jaxprune import rundir

    if not (run_dir / "results.json").exists():
        raise FileNotFoundError(
            f"{run_dir} holds no results.json: not a `jaxprune run` directory (or the run has not finished)"
        )
    results = rundir.load_results(run_dir)
    names = rundir.run_names(results)
    if name not in names:
        raise ValueError(f"method {name!r} is not in {run_dir}; it has {', '.join(names)}")
    seeds = [int(s) for s in results["seeds"]]
    seed = seeds[0] if seed is None else int(seed)
    if seed not in seeds:
        raise ValueError(f"seed {seed} is not in {run_dir}; it has seeds {seeds}")
    net = rundir.load_retrained(run_dir, seed, name)
    if net is None:
        raise FileNotFoundError(
            f"{rundir.retrained_path(run_dir, seed, name)} is missing: the run did not save its retrained nets"
        )
    if net["biases"] is None or any(b is None for b in net["biases"]):
        raise ValueError(
            f"{rundir.retrained_path(run_dir, seed, name)} holds no biases: it was "
            "written by an older jaxprune; rerun `jaxprune run` into a new --out"
        )
    masks = rundir.load_masks(run_dir, [seed]).get(seed, {})
    if name not in masks:
        raise FileNotFoundError(f"{rundir.seed_dir(run_dir, seed) / 'analysis.npz'} has no mask for {name}")
    offsets = np.cumsum([0] + [k.size for k in net["kernels"]])
    flat = masks[name]
    if flat.size != offsets[-1]:
        raise ValueError(f"mask of {name} has {flat.size} weights, the net {offsets[-1]}")
    keep = [flat[a:b].reshape(k.shape) for a, b, k in zip(offsets[:-1], offsets[1:], net["kernels"])]
    record = next((r for r in results["runs"] if r.get("name", r["method"]) == name and int(r["seed"]) == seed), None)
    return results, seed, net["kernels"], net["biases"], keep, record


def size_summary(net: CompactNet, keep: Sequence[np.ndarray]) -> dict:
    """Widths, parameter counts, float32 payload bytes and FLOPs of the full-width net under
    `keep` (its mask, per layer ``(n_in, n_out)`` bool) and of its compact form `net`."""
    widths = list(net.original_widths)
    n_dense = sum(a * b + b for a, b in itertools.pairwise(widths))
    kept_weights = int(sum(int(np.sum(m)) for m in keep))
    nnz = [int(np.count_nonzero(k)) for k in net.kernels]
    sparse_layers = []
    for k, z in zip(net.kernels, nnz):
        by_format = encoding_bytes(k.shape, z)
        fmt = min(SPARSE_FORMATS, key=lambda f: by_format[f])
        sparse_layers.append(
            {"format": fmt, "bytes": by_format[fmt], "nnz": z, "shape": list(k.shape), "bytes_by_format": by_format}
        )
    bias_bytes = int(sum(b.nbytes for b in net.biases))
    index_bytes = 0 if net.all_inputs_used else int(net.input_index.nbytes)
    n_bias = [b.size for b in net.biases]
    return {
        "original_widths": widths,
        "compact_widths": list(net.widths),
        "inputs_used": int(net.input_index.size),
        "hidden_units": [
            {
                "layer": h + 1,
                "original": widths[h + 1],
                "kept": int(net.kept_units[h].size),
                "folded_constant": int(net.folded_units[h].size),
                "dropped_no_output": int(net.unused_units[h].size),
            }
            for h in range(len(widths) - 2)
        ],
        "parameters": {
            "dense": int(n_dense),
            "kept_weights": kept_weights,
            "kept_weights_and_biases": kept_weights + sum(widths[1:]),
            "compact": int(sum(k.size + b.size for k, b in zip(net.kernels, net.biases))),
            "compact_nonzero_weights": int(sum(nnz)),
        },
        "bytes": {
            "dense": 4 * int(n_dense),
            "compact": int(sum(k.nbytes for k in net.kernels)) + bias_bytes + index_bytes,
            "sparse": int(sum(x["bytes"] for x in sparse_layers)) + bias_bytes + index_bytes,
            "note": "float32 payload: dense = the full-width net's kernels and biases; "
            "compact = the params.npz arrays; sparse = the sparse.npz arrays",
        },
        "sparse_layers": sparse_layers,
        "flops": {
            "dense": _flops([a * b for a, b in itertools.pairwise(widths)], widths[1:]),
            "masked": _flops([int(np.sum(m)) for m in keep], widths[1:]),
            "compact": _flops([k.size for k in net.kernels], n_bias),
            "compact_sparse": _flops(nnz, n_bias),
            # what the exported program runs: the first kernel is full input width when
            # the unused inputs are zero rows (input_mode "expand")
            "exported": _flops([a.size for a in net.program_arguments() if a.ndim == 2], n_bias),
        },
    }


def export_run(
    run_dir,
    method: str,
    out,
    *,
    seed: int | None = None,
    data_dir=None,
    repeats: int = 100,
    platforms: Sequence[str] = PLATFORMS,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Export one retrained net of a run directory into `out`; returns the manifest.

    Args:
      run_dir: a `jaxprune run` output directory.
      method: a run name: ``legcnet_ft``, ``legcnet_pt``, ``magnitude``, ``random``, ``dense``
        (or ``magnitude_pt`` / ``random_pt`` where the run has them).
      out: the export directory (created).
      seed: which seed's net (default: the run's first seed).
      data_dir: TFDS data dir when the run's data set is ``mnist``.
      repeats: timed calls per latency figure (batch 1 gets 4x as many: it is cheap and noisy).
      platforms: lowerings to serialise.
    """
    from jaxprune.data import load_dataset

    say = progress or (lambda msg: None)
    run_dir, out = Path(run_dir), Path(out)
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    results, seed, kernels, biases, keep, record = _load_run_net(run_dir, method, seed)
    activation = results["config"]["train"]["activation"]
    net = compact(kernels, biases, keep, activation)

    write_model(net, out, platforms)
    save_sparse(out / SPARSE, net)

    # the check on the run's test split, through the files just written
    say("checking predictions on the test split")
    data = load_dataset(results["dataset"], seed=seed, data_dir=data_dir)
    f32 = lambda arrs: [jnp.asarray(a, jnp.float32) for a in arrs]
    masked_args = (f32(kernels), f32(biases), [jnp.asarray(m) for m in keep])
    masked_fn = jax.jit(masked_forward(activation))
    # timed as deployed without export: the full-width net, pruned weights stored as zeros
    full_args = [
        a
        for k, b, m in zip(kernels, biases, keep)
        for a in (jnp.asarray(np.where(m, k, 0), jnp.float32), jnp.asarray(b, jnp.float32))
    ]
    full_fn = jax.jit(compact_forward(activation))
    dense_fn = lambda x: full_fn(x, *full_args)
    manifest = json.loads((out / MANIFEST).read_text())
    model = load(out)
    x_test = np.asarray(data.x_test, np.float32)
    ref = np.asarray(masked_fn(x_test, *masked_args))
    got = np.asarray(model(x_test))
    labels_ref, labels_got = _labels(ref), _labels(got)
    max_diff = float(np.max(np.abs(got - ref))) if ref.size else 0.0
    mismatched = int(np.sum(labels_ref != labels_got))
    match = bool(np.allclose(got, ref, rtol=RTOL, atol=ATOL) and mismatched == 0)
    acc = float(np.mean(labels_got == np.asarray(data.y_test))) if data.n_test else float("nan")
    acc_ref = float(np.mean(labels_ref == np.asarray(data.y_test))) if data.n_test else float("nan")

    # latency: the full-width masked net (what training produced) vs the exported model
    say("timing")
    rng = np.random.default_rng(0)
    latency = {"dense": {}, "exported": {}}
    for batch, reps in ((1, 4 * repeats), (1024, repeats)):
        x = jnp.asarray(rng.random((batch, net.original_widths[0]), np.float32))
        for who, ms in median_latency_ms({"dense": dense_fn, "exported": model}, x, reps).items():
            latency[who][f"batch_{batch}"] = ms

    files = {name: (out / name).stat().st_size for name in (PARAMS, SPARSE, MODEL, MLIR)}
    sizes = size_summary(net, keep)
    sizes["bytes"]["files"] = files
    manifest.update(
        {
            "run": str(run_dir.resolve()),
            "dataset": results["dataset"],
            "method": method,
            "seed": seed,
            "activation": activation,
            "input_scaling": getattr(data, "scaling", None),
            "scores": "logits (batch, n_out): class = argmax, or score > 0 for one output",
            **sizes,
            "latency_ms": {
                **latency,
                "statistic": "median",
                "repeats_batch_1": 4 * repeats,
                "repeats_batch_1024": repeats,
                "warmup": 3,
                "backend": jax.default_backend(),
                "note": "wall time per call on this machine, inputs already on device; "
                "dense and exported calls alternate",
            },
            "predictions_match": match,
            "check": {
                "split": "test",
                "n_test": int(data.n_test),
                "rtol": RTOL,
                "atol": ATOL,
                "scores_max_abs_diff": max_diff,
                "labels_mismatched": mismatched,
                "test_accuracy": acc,
                "test_accuracy_masked": acc_ref,
                "test_accuracy_recorded": None if record is None else float(record["test_accuracy"]),
            },
            "platforms": list(platforms),
            "jax_version": jax.__version__,
        }
    )
    (out / MANIFEST).write_text(json.dumps(_finite(manifest), indent=2))
    _record_in_run(run_dir, manifest)
    return manifest


def _finite(obj):
    """NaN / inf -> None, so manifest.json is strict JSON."""
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def _record_in_run(run_dir: Path, manifest: dict) -> None:
    """Copy the manifest to ``RUN/exports/<method>_seed<K>.json`` for report.md's deployment
    table (measured latency); a read-only run directory just goes without."""
    try:
        d = run_dir / "exports"
        d.mkdir(exist_ok=True)
        (d / f"{manifest['method']}_seed{manifest['seed']}.json").write_text(json.dumps(_finite(manifest), indent=2))
    except OSError:
        pass


# ------------------------------------------------------------------------------ report
def deployment_rows(run_dir, results: dict) -> list[list[str]]:
    """report.md's deployment table: per run name and seed, kept weights, compact widths,
    payload bytes (dense / compact / sparse), latency (from ``RUN/exports/`` where `export_run`
    measured it) and test accuracy. The compaction needs the mask only (zero stand-in weights:
    which units survive does not depend on the values)."""
    from jaxprune import rundir

    run_dir = Path(run_dir)
    # kernel shapes from results.json alone (the dense.npz next to them is tens of MB)
    sizes = rundir.layer_sizes(results)
    hidden = [int(h) for h in results["config"]["train"]["hidden"]]
    widths = [sizes[0] // hidden[0], *hidden, sizes[-1] // hidden[-1]]
    shapes = list(itertools.pairwise(widths))
    if [a * b for a, b in shapes] != sizes:
        raise ValueError(f"layer sizes {sizes} do not match hidden widths {hidden}")
    offsets = np.cumsum([0] + sizes)
    records = {(r.get("name", r["method"]), int(r["seed"])): r for r in results["runs"]}
    masks = rundir.load_masks(run_dir, results["seeds"])
    rows = []
    for name in rundir.run_names(results):
        for seed in results["seeds"]:
            flat = masks.get(int(seed), {}).get(name)
            rec = records.get((name, int(seed)))
            if flat is None or rec is None or flat.size != offsets[-1]:
                continue
            keep = [flat[a:b].reshape(shape) for a, b, shape in zip(offsets[:-1], offsets[1:], shapes)]
            ones = [np.ones(shape, np.float32) for shape in shapes]  # nonzero wherever kept
            net = compact(
                ones,
                [np.zeros(shape[1], np.float32) for shape in shapes],
                keep,
                results["config"]["train"]["activation"],
            )
            s = size_summary(net, keep)
            lat = _exported_latency(run_dir / "exports" / f"{name}_seed{seed}.json")
            n_weights = s["parameters"]["dense"] - sum(s["original_widths"][1:])
            b = s["bytes"]
            rows.append(
                [
                    name,
                    seed,
                    f"{s['parameters']['kept_weights']} / {n_weights}",
                    "-".join(map(str, s["compact_widths"])),
                    f"{b['dense']} / {b['compact']} / {b['sparse']}",
                    *lat,
                    f"{rec['test_accuracy']:.4f}",
                ]
            )
    return rows


def _exported_latency(path: Path) -> list[str]:
    try:
        lat = json.loads(path.read_text())["latency_ms"]
        return [f"{lat['dense'][b]:.3f} → {lat['exported'][b]:.3f}" for b in ("batch_1", "batch_1024")]
    except (OSError, KeyError, TypeError, ValueError):
        return ["n/a", "n/a"]


DEPLOYMENT_HEADER = [
    "net",
    "seed",
    "kept weights",
    "compact widths",
    "bytes dense / compact / sparse",
    "ms batch 1 (dense → exported)",
    "ms batch 1024 (dense → exported)",
    "test acc",
]
