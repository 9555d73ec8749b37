"""Simulated devices: traffic and the strip-sensor signals of a WIM lane."""

from zhichao.devices.sim.lane import SimOptions, read_truth, simulate, simulate_recording
from zhichao.devices.sim.traffic import ABNORMAL_KINDS, CATALOGUE

__all__ = ["ABNORMAL_KINDS", "CATALOGUE", "SimOptions", "read_truth", "simulate",
           "simulate_recording"]
