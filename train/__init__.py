"""Float LSTM/GRU predictors in PyTorch (imported as ``qlstm.train``)."""
