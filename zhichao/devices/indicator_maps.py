"""Modbus register maps of weighing indicators, and the sans-I/O decoding of one poll.

:class:`ModbusIndicatorMap` names the holding registers (0-based) of gross, net, status and
decimals; :data:`INDICATOR_MAPS` holds the known ones; :func:`decode_indicator_registers`
turns one block of registers into a :class:`~zhichao.devices.data.WeightReading` with its
status flags (stable or motion, overload, net mode) and resolution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from zhichao.devices.data import WeightReading
from zhichao.devices.errors import DeviceProtocolError
from zhichao.devices.modbus import regs_to_f32, regs_to_i32


@dataclass(frozen=True)
class ModbusIndicatorMap:
    """Holding-register map of an indicator (0-based addresses).

    ``data_type`` is ``int32`` (counts × ``scale_kg``) or ``float32`` [kg]; words are
    most significant first unless ``word_order="little"``. ``stable_when_set`` False means
    the bit is a *motion* bit (stable when clear). ``valid_bit`` None when absent.
    """

    gross_address: int = 0
    net_address: int | None = 2
    status_address: int = 4
    stable_bit: int = 0
    stable_when_set: bool = True
    overload_bit: int | None = 1
    net_mode_bit: int | None = 2
    valid_bit: int | None = 15
    data_type: str = "int32"
    word_order: str = "big"
    scale_kg: float = 1.0
    decimals_address: int | None = 5

    def span(self) -> tuple[int, int]:
        """(first address, count) of the one read that covers every register of the map."""
        addresses = [self.gross_address, self.gross_address + 1, self.status_address]
        if self.net_address is not None:
            addresses += [self.net_address, self.net_address + 1]
        if self.decimals_address is not None:
            addresses.append(self.decimals_address)
        lo, hi = min(addresses), max(addresses)
        return lo, hi - lo + 1


#: known maps; ``zhichao`` is the map of the simulated twin. ``tuna-id551`` follows the
#: published ID551PN table (40003/4 gross, 40005 status: b12 motion, b10 overload, b11 net,
#: b15 data OK); its data type is not confirmed — check on the device.
INDICATOR_MAPS: dict[str, ModbusIndicatorMap] = {
    "zhichao": ModbusIndicatorMap(),
    "tuna-id551": ModbusIndicatorMap(gross_address=2, net_address=None, status_address=4,
                                     stable_bit=12, stable_when_set=False, overload_bit=10,
                                     net_mode_bit=11, valid_bit=15, data_type="float32",
                                     decimals_address=None),
}


def _scale_decimals(scale_kg: float) -> int | None:
    """Decimals of counts × ``scale_kg`` when the scale is a power of ten, else None."""
    if scale_kg <= 0 or not math.isfinite(scale_kg):
        return None
    exp = math.log10(scale_kg)
    return max(0, -round(exp)) if abs(exp - round(exp)) < 1e-9 else None


def decode_indicator_registers(regs: list[int], first_address: int,
                               m: ModbusIndicatorMap) -> WeightReading:
    """One reading from the registers ``regs`` read from ``first_address`` (see
    :meth:`ModbusIndicatorMap.span`).

    Raises :class:`DeviceProtocolError` when the device says its data is not valid (the
    valid bit clear: an error of the indicator, never a weight) or the decimals register
    is absurd. An overload bit gives a reading flagged ``overload``, not a weight.
    """

    def at(a: int, n: int = 1) -> list[int]:
        return regs[a - first_address:a - first_address + n]

    def value(words: list[int]) -> float:
        words = words if m.word_order == "big" else words[::-1]
        if m.data_type == "float32":
            return regs_to_f32(words)
        return regs_to_i32(words) * m.scale_kg

    status = at(m.status_address)[0]

    def bit(b: int | None) -> bool:
        return b is not None and bool(status >> b & 1)

    if m.valid_bit is not None and not bit(m.valid_bit):
        raise DeviceProtocolError(f"status {status:#06x}: the data-valid bit {m.valid_bit} is "
                                  "clear, the indicator reports an error (数据无效)")
    dec = at(m.decimals_address)[0] if m.decimals_address is not None else 0
    if dec > 6:
        raise DeviceProtocolError(f"absurd decimals register {dec}")
    divisor = 10**dec
    gross = value(at(m.gross_address, 2)) / divisor
    is_net = bit(m.net_mode_bit)
    net = value(at(m.net_address, 2)) / divisor if m.net_address is not None else None
    weight = net if (is_net and net is not None) else gross
    stable = bit(m.stable_bit) if m.stable_when_set else not bit(m.stable_bit)
    tare = (gross - net) if net is not None else None
    base = None if m.data_type == "float32" else _scale_decimals(m.scale_kg)
    raw = b"".join(r.to_bytes(2, "big") for r in regs)
    return WeightReading(weight, stable, is_net, tare, bit(m.overload_bit), raw=raw,
                         decimals=None if base is None else base + dec)
