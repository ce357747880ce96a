"""Design-space exploration (issue #19): see :mod:`qlstm.explore.study`."""
