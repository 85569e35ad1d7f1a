"""Weight-axis sharding and memory budgets for the Lyapunov and Granger kernels.

Every weight is analysed independently (its own trajectory, its own LE series, its own Granger
test against the shared risk series), so the weight axis shards without communication:

* :func:`weight_mesh` -- a 1-D :class:`jax.sharding.Mesh` (axis ``"weights"``) over the local
  devices (over all processes' devices after ``jax.distributed.initialize()``).
* :func:`sharded_windowed_le` / :func:`sharded_granger_tests` -- drop-in forms of
  :func:`jaxprune.lyapunov.windowed_le` and :func:`jaxprune.granger.granger_tests`: the weight
  axis is padded, sharded with a :class:`~jax.sharding.NamedSharding` and each device runs the
  unchanged public kernel on its shard (a one-device program per device, dispatched
  asynchronously: see `_shard_call` for why not ``shard_map``); results are gathered and
  unpadded.
* :func:`sharded_window_fn` -- the same for a per-window function inside training's jitted epoch
  (the streaming Lyapunov step of `jaxprune.pipeline`), with ``jax.shard_map`` (one device:
  plain chunks).
* :func:`chunk_size_for_budget` and the ``*_bytes_per_weight`` measurements turn a memory budget
  (bytes per device) into chunk sizes.

Layout (why sharded == single device, bit for bit)
--------------------------------------------------
XLA compiles a kernel for a shape; lanes of a different batch width can round differently in
float32 (vectorised body vs tail, FMA contraction; the float64 Lyapunov parity mode is guarded
against this, the Granger kernel is not). So the unit of work here is a *chunk* of ``C`` weights
whose size never depends on the number of devices: the (padded) weight axis is cut into blocks,
each block into equal per-device shards, each shard into chunks of ``C`` weights that the kernel
sees one at a time (``lax.map``). Weight ``i`` is always lane ``i % C`` of a chunk computed by the
same compiled program, on 1 device or on 64. ``C`` comes from the memory budget (or a default),
never from the device count, so a run on 4 devices equals a run on 1 device with the same
budget exactly (tests/test_sharding.py). Padding columns are zero (constant) series: status
CONSTANT, independent of the real lanes, dropped before returning.

Memory (per device)
-------------------
A call holds one block shard (inputs ``T`` x shard weights as sent, outputs) and the temporaries
of one chunk. The temporaries of the kernels are measured, not guessed: the ``*_bytes_per_weight``
functions compile the per-chunk program for a small chunk and read XLA's
``compiled.memory_analysis()`` (temp + argument + output bytes, divided by the chunk width; the
kernels' temporaries are linear in the chunk width). Measured on CPU (jax 0.10.2): one 50-step
window in the streaming Lyapunov step ~15 KB per weight in float32 / ~26 KB in float64 (the
jitted step keeps the general-path branch of its ``lax.cond``); Granger, n = 254, maxlag 14,
float64 ~65 KB per weight of a chunk. With ``memory_budget_bytes`` half of the budget goes to the
chunk temporaries and half to the block's inputs / outputs.

Multi-host (a pod)
------------------
Call ``jax.distributed.initialize()`` in every process first (``jaxprune.distributed.
initialize_from_env()``; docs/multiprocess.md); :func:`weight_mesh` then spans all processes'
devices, every process passes the same (host) arrays (e.g. a memory-mapped trajectory: each
process reads only the columns of its own devices, through ``jax.make_array_from_callback``), and
every process gets the full gathered result (``multihost_utils.process_allgather``).
:func:`sharded_window_fn` / :func:`window_le_fn` default to the process's own devices: inside a
jitted training epoch the window is a process-local array (tests/test_multiprocess.py runs both
kernels on 2 processes).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxprune import granger as granger_mod
from jaxprune import lyapunov, windows

AXIS = "weights"
# Default chunk widths (weights per kernel step) when no budget is given.
WINDOW_CHUNK = 8192  # streaming LE, one window: ~8k lanes is the kernel's cache sweet spot
LE_CHUNK = 256  # whole trajectories (windowed_le's own default)
GRANGER_CHUNK = 256  # granger_tests' own default

__all__ = [
    "AXIS",
    "weight_mesh",
    "chunk_size_for_budget",
    "window_le_bytes_per_weight",
    "le_bytes_per_weight",
    "granger_bytes_per_weight",
    "sharded_window_fn",
    "window_le_fn",
    "sharded_windowed_le",
    "sharded_granger_tests",
]


# ----------------------------------------------------------------------------- mesh and budget
def weight_mesh(devices=None) -> Mesh:
    """A 1-D mesh with axis ``"weights"`` over `devices` (default: the local devices, or all
    processes' devices once ``jax.distributed.initialize()`` has run)."""
    if devices is None:
        devices = jax.devices() if jax.process_count() > 1 else jax.local_devices()
    devices = list(devices)
    if not devices:
        raise ValueError("no devices given")
    return Mesh(np.array(devices), (AXIS,))


def chunk_size_for_budget(
    bytes_per_weight: float, budget: float | None, *, default: int | None = None, multiple: int = 1
) -> int:
    """Weights that fit in `budget` bytes at `bytes_per_weight` each (>= `multiple`, a multiple
    of it); `default` caps it (and is returned when `budget` is None)."""
    if budget is None:
        if default is None:
            raise ValueError("give a budget or a default")
        return int(default)
    if budget <= 0 or bytes_per_weight <= 0:
        raise ValueError(f"budget and bytes_per_weight must be > 0, got {budget}, {bytes_per_weight}")
    n = int(budget // bytes_per_weight)
    if default is not None:
        n = min(n, int(default))
    return max(multiple, (n // multiple) * multiple)


def _compiled_bytes(fn, *structs) -> int:
    ma = jax.jit(fn).lower(*structs).compile().memory_analysis()
    if ma is None:  # a backend without memory analysis
        return 0
    return int(ma.temp_size_in_bytes + ma.argument_size_in_bytes + ma.output_size_in_bytes)


_PROBE = 64  # chunk width the per-weight bytes are measured at


@functools.cache
def window_le_bytes_per_weight(window: int, dtype: str = "float32", **le_kwargs) -> float:
    """Measured device bytes per weight of the streaming LE step on one ``(window, C)`` window
    (temporaries + input + output, per weight of the chunk). `le_kwargs`: m, d, t, s, r,
    quantize as for :func:`jaxprune.lyapunov.windowed_le_update`."""
    dt = jnp.dtype(dtype)
    fn = lambda w: lyapunov.windowed_le_update(w.astype(dt), **le_kwargs)  # noqa: E731
    return _compiled_bytes(fn, jax.ShapeDtypeStruct((window, _PROBE), jnp.float32)) / _PROBE


@functools.cache
def le_bytes_per_weight(T: int, window: int, stride: int, dtype: str = "float64", **le_kwargs) -> float:
    """Measured device bytes per weight of one chunk of :func:`sharded_windowed_le` (a ``(T, C)``
    float32 trajectory chunk, all its windows, the LE kernel's temporaries, the outputs)."""
    dt = jnp.dtype(dtype)
    fn = functools.partial(_le_chunk, window=window, stride=stride, dtype=dt, le_kwargs=le_kwargs)
    return _compiled_bytes(fn, jax.ShapeDtypeStruct((T, _PROBE), jnp.float32)) / _PROBE


@functools.cache
def granger_bytes_per_weight(n: int, maxlag: int, dtype: str = "float64") -> float:
    """Measured device bytes per weight of one :func:`jaxprune.granger.granger_tests` chunk
    (series of length `n`)."""
    dt = jnp.dtype(dtype)
    fn = lambda y, x: granger_mod.granger_tests(y, x, maxlag=maxlag, chunk_size=_PROBE)  # noqa
    return _compiled_bytes(fn, jax.ShapeDtypeStruct((n,), dt), jax.ShapeDtypeStruct((_PROBE, n), dt)) / _PROBE


# ----------------------------------------------------------------------------- core layout
def _layout(n_weights: int, n_dev: int, chunk: int, block: int | None):
    """(C, chunks per device shard per block, number of blocks): the padded weight axis is
    n_blocks * n_dev * k * C, block b covers weights [b * n_dev * k * C, (b + 1) * ...)."""
    C = max(1, min(int(chunk), n_weights))
    per_dev = -(-n_weights // n_dev)  # weights per device if everything fits in one block
    k = -(-per_dev // C)
    if block is not None:  # at most `block` weights per device per call
        k = max(1, min(k, int(block) // C))
    n_blocks = -(-n_weights // (n_dev * k * C))
    return C, k, n_blocks


def _plan(
    n_weights: int,
    n_dev: int,
    *,
    chunk_size: int | None,
    budget: float | None,
    kernel_bytes: Callable[[], float],
    io_bytes: float,
    default: int,
):
    """Chunk and block layout (`_layout`) of a sharded kernel call: an explicit `chunk_size`, else
    as many weights per chunk as half the per-device `budget` holds at `kernel_bytes()` each
    (measured lazily: it compiles a probe), else `default`; with a budget, the other half bounds
    a block's inputs and outputs at `io_bytes` per weight."""
    if chunk_size is not None:
        chunk = int(chunk_size)
    elif budget is not None:
        chunk = chunk_size_for_budget(kernel_bytes(), budget / 2, default=default)
    else:
        chunk = default
    block = None if budget is None else chunk_size_for_budget(io_bytes, budget / 2, multiple=min(chunk, n_weights))
    return _layout(n_weights, n_dev, chunk, block)


def _map_chunks(fn: Callable, x: jax.Array, C: int):
    """Apply fn to consecutive chunks of C weights of x (weight axis last, a multiple of C);
    fn's outputs have the weight axis last; they are concatenated back in order."""
    W = x.shape[-1]
    k = W // C
    xs = jnp.moveaxis(x.reshape(x.shape[:-1] + (k, C)), -2, 0)  # (k, ..., C)
    out = lax.map(fn, xs)
    return jax.tree.map(lambda o: jnp.moveaxis(o, 0, -2).reshape(o.shape[1:-1] + (k * C,)), out)


def _last_axis_spec(ndim: int):
    return P(*([None] * (ndim - 1)), AXIS)


def _shard_call(fn: Callable, mesh: Mesh, in_ndims, out_struct):
    """``call(*args)`` running `fn` on every device's shard of the global arrays in `args`.

    Array inputs (ndim given in `in_ndims`) are global arrays sharded on their last (weight)
    axis over `mesh` (`_put_block`); inputs marked None are replicated. Each device runs the
    *single-device* jitted `fn` on its own shard (dispatch is asynchronous, so all devices run
    at once) and the outputs are assembled into global arrays sharded the same way. Why not one
    SPMD program (``jit(shard_map(fn))``): XLA:CPU compiles the partitioned program of the
    Granger kernel to code that rounds differently (~1e-15 relative) from the one-device program
    of the same HLO; per-device programs are identical to a one-device run by construction.
    """
    jfn = jax.jit(fn)
    out_sharding = jax.tree.map(lambda s: NamedSharding(mesh, _last_axis_spec(len(s.shape))), out_struct)

    def call(*args):
        sharded = [i for i, nd in enumerate(in_ndims) if nd is not None]
        ref = args[sharded[0]]
        width = ref.shape[-1]
        outs = []
        for shard in ref.addressable_shards:
            dev = shard.device
            local = []
            for i, a in enumerate(args):
                if in_ndims[i] is None:
                    local.append(jax.device_put(a, dev))
                else:
                    local.append(next(s.data for s in a.addressable_shards if s.device == dev))
            outs.append(jfn(*local))
        per_dev = width // mesh.size
        leaves = [jax.tree.leaves(o) for o in outs]
        treedef = jax.tree.structure(outs[0])
        glob = []
        for j, sh in enumerate(jax.tree.leaves(out_sharding)):
            shape = leaves[0][j].shape[:-1] + (per_dev * mesh.size,)
            glob.append(jax.make_array_from_single_device_arrays(shape, sh, [lv[j] for lv in leaves]))
        return jax.tree.unflatten(treedef, glob)

    return call


def _to_host(a: jax.Array) -> np.ndarray:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(a, tiled=True))
    return np.asarray(a)


def _put_block(host: np.ndarray | jax.Array, w0: int, width: int, mesh: Mesh, dtype) -> jax.Array:
    """Columns [w0, w0 + width) of the 2-D `host` array (zero-padded past its end) as a global
    array sharded on the last axis; each process reads only its own devices' columns."""
    rows, W = host.shape
    sharding = NamedSharding(mesh, P(None, AXIS))

    def cb(index):
        cols = index[1]
        a, b = w0 + (cols.start or 0), w0 + (width if cols.stop is None else cols.stop)
        part = np.asarray(host[:, a : min(b, W)], dtype) if a < W else np.zeros((rows, 0), dtype)
        if part.shape[1] < b - a:
            part = np.pad(part, ((0, 0), (0, b - a - part.shape[1])))
        return part

    return jax.make_array_from_callback((rows, width), sharding, cb)


# ----------------------------------------------------------------------------- streaming window
def sharded_window_fn(fn: Callable, mesh: Mesh | None = None, *, chunk_size: int | None = None) -> Callable:
    """Shard and chunk a per-window function over the weight axis.

    fn: ``(window, C) -> pytree of arrays whose last axis is the C weights`` (per-weight
    independent, e.g. the streaming Lyapunov step). Returns ``g(win)`` for ``(window,
    n_weights)`` windows (inside or outside ``jax.jit``; use it as the `Trainer`'s window_fn):
    the weights are zero-padded to ``n_dev * k * C``, sharded over `mesh` (default: this
    process's devices, ``weight_mesh(jax.local_devices())``) and each device maps fn over its k
    chunks of ``C = min(chunk_size, n_weights)`` weights (default :data:`WINDOW_CHUNK`). Results
    do not depend on the number of devices (module docstring).
    """
    # default: this process's devices only. The window is a process-local array inside
    # training's jitted epoch (training runs replicated in every process), which a mesh over
    # other processes' devices cannot take.
    mesh = weight_mesh(jax.local_devices()) if mesh is None else mesh
    chunk = WINDOW_CHUNK if chunk_size is None else int(chunk_size)
    n_dev = mesh.size

    def g(win):
        W = win.shape[-1]
        C, k, _ = _layout(W, n_dev, chunk, None)
        Wp = n_dev * k * C
        if Wp != W:
            win = jnp.pad(win, [(0, 0)] * (win.ndim - 1) + [(0, Wp - W)])
        if n_dev == 1:  # same chunks, no shard_map: inside training's scan on XLA:CPU a
            # shard_map region made every epoch ~20x slower (measured, jax 0.10.2)
            return jax.tree.map(lambda o: o[..., :W], _map_chunks(fn, win, C))
        struct = jax.eval_shape(fn, jax.ShapeDtypeStruct(win.shape[:-1] + (C,), win.dtype))
        out_specs = jax.tree.map(lambda s: _last_axis_spec(len(s.shape)), struct)
        body = jax.shard_map(
            lambda x: _map_chunks(fn, x, C),
            mesh=mesh,
            in_specs=_last_axis_spec(win.ndim),
            out_specs=out_specs,
            check_vma=False,
        )
        out = body(win)
        return jax.tree.map(lambda o: o[..., :W], out)

    return g


def window_le_fn(
    *,
    mesh: Mesh | None = None,
    memory_budget_bytes: float | None = None,
    window: int | None = None,
    m: int = 2,
    d: int = 1,
    t: int = 0,
    s: int = 20,
    r: float | None = 20.0,
    quantize: bool = False,
    mode: str = "parity",
    params: lyapunov.LyapunovParams | None = None,
):
    """The streaming Lyapunov step ``win (window, n_weights) float32 -> (slope, status int8)``
    (:func:`jaxprune.lyapunov.window_le`), sharded over `mesh` and chunked so that one
    chunk's temporaries fit `memory_budget_bytes` per device (needs `window` to measure).

    params: a `jaxprune.lyapunov.LyapunovParams` instead of the keywords m, d, t, s, r, quantize
    (which are then ignored)."""
    if mode not in ("parity", "fast"):
        raise ValueError(f"mode must be 'parity' or 'fast', got {mode!r}")
    dtype = jnp.float64 if mode == "parity" else jnp.float32
    if params is not None:
        m, d, t, s, r, quantize = params.m, params.d, params.theiler, params.s, params.r, params.quantize
    opts = dict(m=m, d=d, t=t, s=s, r=r, quantize=bool(quantize))
    chunk = WINDOW_CHUNK
    if memory_budget_bytes is not None:
        if window is None:
            raise ValueError("a memory budget needs the window length")
        pw = window_le_bytes_per_weight(int(window), jnp.dtype(dtype).name, **opts)
        chunk = chunk_size_for_budget(pw, memory_budget_bytes, default=WINDOW_CHUNK)

    def step(w):
        slope, status = lyapunov.window_le(w.astype(dtype), mode=mode, **opts)
        return slope, status.astype(jnp.int8)

    return sharded_window_fn(step, mesh, chunk_size=chunk)


# ----------------------------------------------------------------------------- whole trajectories
def _le_chunk(x, *, window, stride, dtype, le_kwargs):
    """(T, C) trajectory chunk -> le (n_windows, C), status (n_windows, C) int8."""
    T, C = x.shape
    nw = windows.n_windows(T, window, stride)
    idx = stride * np.arange(nw)[None, :] + np.arange(window)[:, None]  # (window, nw), static
    wins = x[idx].reshape(window, nw * C)  # window k of weight c in lane k * C + c
    mode = "parity" if dtype == jnp.float64 else "fast"
    slope, status = lyapunov.windowed_le_update(wins.astype(dtype), mode=mode, **le_kwargs)
    return slope.reshape(nw, C), status.astype(jnp.int8).reshape(nw, C)


def _le_dtype(traj, mode: str):
    if mode == "parity" or (mode == "auto" and np.dtype(getattr(traj, "dtype", np.float64)) == np.float64):
        if not jax.config.read("jax_enable_x64"):
            raise ValueError("parity mode (float64) needs jax.config.update('jax_enable_x64', True)")
        return jnp.float64
    if mode in ("fast", "auto"):
        return jnp.float32
    raise ValueError(f"mode must be 'parity', 'fast' or 'auto', got {mode!r}")


def sharded_windowed_le(
    traj,
    *,
    window: int = 50,
    stride: int = 45,
    m: int = 2,
    d: int = 1,
    t: int = 0,
    s: int = 20,
    r: float | None = 20.0,
    quantize: bool = False,
    mode: str = "auto",
    end_offset: int = 5,
    mesh: Mesh | None = None,
    memory_budget_bytes: float | None = None,
    chunk_size: int | None = None,
) -> lyapunov.WindowedLE:
    """:func:`jaxprune.lyapunov.windowed_le` with the weight axis sharded over `mesh` (default:
    all local devices) and chunked to fit `memory_budget_bytes` per device.

    traj: ``(T, ...)`` NumPy (a memory map is fine: only the columns of the current block are
    read), or JAX array. Same arguments and result as ``windowed_le``; parity mode results equal
    it bit for bit, fast mode (float32) to rounding (its lanes round by batch width), and either
    mode is identical for any number of devices at the same budget / `chunk_size`.
    """
    dtype = _le_dtype(traj, mode)
    shape = tuple(traj.shape)
    if len(shape) < 1:
        raise ValueError("traj must have shape (T, ...)")
    T, W = shape[0], int(np.prod(shape[1:], dtype=np.int64))
    nw = windows.n_windows(T, window, stride)
    opts = dict(m=m, d=d, t=t, s=s, r=r, quantize=bool(quantize))
    if nw <= 0 or W == 0:  # nothing to shard: the kernel's own edge-case handling
        return lyapunov.windowed_le(traj, window=window, stride=stride, mode=mode, end_offset=end_offset, **opts)
    lyapunov.windowed_le(
        np.zeros((window, 1), np.float32), window=window, stride=stride, mode="fast", **opts
    )  # validates the options (cheap, raises early)
    mesh = weight_mesh() if mesh is None else mesh
    n_dev = mesh.size
    send = np.float32 if np.dtype(getattr(traj, "dtype", np.float32)) == np.float32 else dtype
    item = np.dtype(send).itemsize
    io_pw = T * item + nw * (np.dtype(dtype).itemsize + 1)  # block input + outputs per weight
    C, k, n_blocks = _plan(
        W,
        n_dev,
        chunk_size=chunk_size,
        budget=memory_budget_bytes,
        io_bytes=io_pw,
        kernel_bytes=lambda: le_bytes_per_weight(T, window, stride, np.dtype(dtype).name, **opts),
        default=LE_CHUNK,
    )
    width = n_dev * k * C
    fn = functools.partial(_le_chunk, window=window, stride=stride, dtype=dtype, le_kwargs=opts)
    struct = jax.eval_shape(fn, jax.ShapeDtypeStruct((T, C), send))
    call = _shard_call(lambda x: _map_chunks(fn, x, C), mesh, (2,), struct)
    flat = traj.reshape(T, W)
    le = np.empty((nw, W), dtype)
    status = np.empty((nw, W), np.int8)
    for b in range(n_blocks):
        w0 = b * width
        l_b, s_b = call(_put_block(flat, w0, width, mesh, send))
        w1 = min(w0 + width, W)
        le[:, w0:w1] = _to_host(l_b)[:, : w1 - w0]
        status[:, w0:w1] = _to_host(s_b)[:, : w1 - w0]
    tail = shape[1:]
    ends = windows.window_end_steps(nw, window, stride, end_offset)
    return lyapunov.WindowedLE(le.reshape((nw,) + tail), ends, status.reshape((nw,) + tail))


def sharded_granger_tests(
    y,
    x,
    *,
    maxlag: int,
    mesh: Mesh | None = None,
    memory_budget_bytes: float | None = None,
    chunk_size: int | None = None,
    collinear_tol: float | None = None,
) -> granger_mod.GrangerResult:
    """:func:`jaxprune.granger.granger_tests` for one shared ``y`` ``(n,)`` and causes ``x``
    ``(n_weights, n)``, the weight axis sharded over `mesh` and chunked to fit
    `memory_budget_bytes` per device. Returns a `GrangerResult` of NumPy arrays.

    Each chunk of ``C`` weights (default 256, the kernel's own default, smaller only when the
    budget cannot hold 256) is one ``granger_tests`` call; results are identical for any number
    of devices at the same budget / `chunk_size` (module docstring).
    """
    y = np.asarray(y) if not isinstance(y, jax.Array) else y
    if y.ndim != 1:
        raise ValueError(f"sharded_granger_tests takes one shared y of shape (n,), got {y.shape}")
    if getattr(x, "ndim", None) != 2 or x.shape[1] != y.shape[0]:
        raise ValueError(f"x must have shape (n_weights, {y.shape[0]}), got {getattr(x, 'shape', None)}")
    dt = jnp.result_type(x.dtype, y.dtype, jnp.float32)
    if not jnp.issubdtype(dt, jnp.floating):
        dt = jnp.float32
    W, n = x.shape
    # the kernel's argument checks (maxlag, lengths, finite y) on a one-weight call, up front
    granger_mod.granger_tests(jnp.asarray(y, dt), jnp.zeros((1, n), dt), maxlag=maxlag, collinear_tol=collinear_tol)
    mesh = weight_mesh() if mesh is None else mesh
    n_dev = mesh.size
    item = np.dtype(dt).itemsize
    io_pw = n * item + (7 * maxlag + 1) * item  # x row + (stat, p) x 3 distinct tests + status
    C, k, n_blocks = _plan(
        W,
        n_dev,
        chunk_size=chunk_size,
        budget=memory_budget_bytes,
        io_bytes=io_pw,
        kernel_bytes=lambda: granger_bytes_per_weight(n, maxlag, np.dtype(dt).name),
        default=GRANGER_CHUNK,
    )
    width = n_dev * k * C

    def fn(yy, xc):  # xc: (n, C), weights last
        res = granger_mod.granger_tests(yy, xc.T, maxlag=maxlag, chunk_size=C, collinear_tol=collinear_tol)
        pick = lambda tr: (tr.statistic.T, tr.pvalue.T)  # noqa: E731  (maxlag, C)
        return (pick(res.ssr_ftest), pick(res.ssr_chi2test), pick(res.lrtest), pick(res.params_ftest), res.status)

    yj = jnp.asarray(y, dt)
    struct = jax.eval_shape(fn, yj, jax.ShapeDtypeStruct((n, C), dt))
    call = _shard_call(lambda yy, xx: _map_chunks(functools.partial(fn, yy), xx, C), mesh, (None, 2), struct)
    x_host = x if isinstance(x, jax.Array) else np.asarray(x)
    parts = []
    for b in range(n_blocks):
        w0 = b * width
        xb = _put_block(_Transposed(x_host), w0, width, mesh, dt)
        out = call(yj, xb)
        w1 = min(w0 + width, W)
        parts.append(jax.tree.map(lambda o: _to_host(o)[..., : w1 - w0], out))  # noqa: B023 (run now)
    cat = jax.tree.map(lambda *a: np.concatenate(a, -1), *parts)
    ref = jax.eval_shape(
        lambda yy, xx: granger_mod.granger_tests(yy, xx, maxlag=maxlag), yj, jax.ShapeDtypeStruct((1, n), dt)
    )
    lags = np.arange(1, maxlag + 1)
    dfd = n - lags - 2 * lags - 1

    def test(pair, chi2):
        stat, p = pair
        return granger_mod.TestResult(
            stat.T,
            p.T,
            lags.astype(ref.ssr_ftest.df_num.dtype),
            None if chi2 else dfd.astype(ref.ssr_ftest.df_denom.dtype),
        )

    return granger_mod.GrangerResult(
        ssr_ftest=test(cat[0], False),
        ssr_chi2test=test(cat[1], True),
        lrtest=test(cat[2], True),
        params_ftest=test(cat[3], False),
        status=cat[4],
        nobs=(n - lags).astype(ref.nobs.dtype),
    )


class _Transposed:
    """A ``(n, W)`` view of a ``(W, n)`` array for :func:`_put_block` (reads only the rows of
    the requested weights)."""

    def __init__(self, a):
        self.a = a
        self.shape = (a.shape[1], a.shape[0])

    def __getitem__(self, idx):
        rows, cols = idx
        return np.asarray(self.a[cols]).T[rows]
