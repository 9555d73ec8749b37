"""Checksums used by the device protocols, as plain functions on bytes.

``crc16_ccitt``
    CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final XOR);
    check value of ``b"123456789"`` is 0x29B1. Used by the zhichao binary sample frame.
``crc16_modbus``
    CRC-16/MODBUS (poly 0xA001 reflected, init 0xFFFF); check value 0x4B37. pymodbus
    computes it for RTU itself; it is here for documentation and tests.
``xor8``
    XOR of all bytes (Yaohua XK3190, NMEA-style record lines).
``toledo_checksum``
    Two's complement of the 7 low bits of the byte sum (Toledo continuous).
"""

from __future__ import annotations

import binascii


def _make_table_ccitt() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
        table.append(crc)
    return tuple(table)


_TABLE_CCITT = _make_table_ccitt()


def crc16_ccitt_reference(data: bytes | bytearray | memoryview, crc: int = 0xFFFF) -> int:
    """Table-driven pure-Python CRC-16/CCITT-FALSE (the oracle for :func:`crc16_ccitt`)."""
    for b in bytes(data):
        crc = ((crc << 8) & 0xFFFF) ^ _TABLE_CCITT[((crc >> 8) ^ b) & 0xFF]
    return crc


def crc16_ccitt(data: bytes | bytearray | memoryview, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE of ``data`` (C speed through :func:`binascii.crc_hqx`)."""
    return binascii.crc_hqx(data, crc)


def crc16_modbus(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/MODBUS of ``data`` (transmitted low byte first on the wire)."""
    crc = 0xFFFF
    for b in bytes(data):
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def xor8(data: bytes | bytearray | memoryview) -> int:
    """XOR of every byte of ``data``."""
    value = 0
    for b in bytes(data):
        value ^= b
    return value


def toledo_checksum(data: bytes | bytearray | memoryview) -> int:
    """Toledo continuous checksum: two's complement of the 7 low bits of the byte sum."""
    return (-sum(bytes(data))) & 0x7F
