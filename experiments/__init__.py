"""Studies built on `jaxprune.pipeline`, each runnable as ``python -m experiments.<name>``:

* `mnist_original`: the original MNIST setup (full TFDS MNIST when present, else mnist5k), all
  41,000 weights and the original's last-two-layers variant;
* `tabular`: the original's from-scratch tabular nets on every offline data set (+ ``--csv``);
* `sensitivity`: how the masks and the accuracy move with window, overlap, maxlag, alpha and the
  PT window count.

Each has its ``CONFIG`` at the top and ``main(argv)`` with ``--out``, ``--seeds``, ``--quick``.
"""
