"""Bit-exact NumPy simulator of the hls4ml firmware (imported as ``qlstm.firmware_sim``).

The firmware that ``qlstm hls`` generates (hls4ml 1.3.0, io_parallel, latency strategy, static
LSTM/GRU kernels) is simulated on integer mantissas, vectorised over windows, and gives the same
numbers as the compiled C simulation (tested by exact equality against it).

* :mod:`qlstm.hls4ml_tables` (core) - the sigmoid/tanh lookup tables and their index computation
  (:mod:`.tables` re-exports it while other branches merge);
* :mod:`.kernels` - exact dense products (``dense_latency``), lookup activations, overflow log;
* :mod:`.simulate` - :class:`~.simulate.Firmware`: the network, ``run``/``predict``/trace;
* :mod:`.backend` - ``predict(run_dir, x)`` / ``trace(run_dir, x)``, the ``firmware`` backend of
  ``qlstm predict``;
* :mod:`.reference` - the same network in float64 under the same tensor names;
* :mod:`.cli` - ``qlstm firmware check`` and ``qlstm firmware trace``;
"""
