"""zhichao.calibration stage."""
