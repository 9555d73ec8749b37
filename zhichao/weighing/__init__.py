"""zhichao.weighing: raw WIM samples → axles, speed, corrected loads → class, limit, overload."""
