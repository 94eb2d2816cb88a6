"""What maspo reads of the CPU (``maspo.precision``): vendor, flags, and the bf16 units
``train.precision=auto`` decides by, from cpuinfo files shaped as Linux writes them."""

from __future__ import annotations

import pytest

import maspo.precision as precision

ZEN4 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model name\t: AMD EPYC
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni
bugs\t\t: sysret_ss_attrs

processor\t: 1
vendor_id\t: AuthenticAMD
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni
"""
SAPPHIRE_RAPIDS = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu avx512f avx512_bf16 amx_bf16 amx_tile amx_int8
"""


@pytest.mark.parametrize(("text", "vendor", "units", "native"), [
    (ZEN4, "AuthenticAMD", ("avx512_bf16",), False),
    (SAPPHIRE_RAPIDS, "GenuineIntel", ("avx512_bf16", "amx_bf16", "amx_tile"), True),
])
def test_vendor_and_bf16_units_are_read_from_cpuinfo(tmp_path, monkeypatch, text, vendor,
                                                     units, native):
    path = tmp_path / "cpuinfo"
    path.write_text(text)
    monkeypatch.setattr(precision, "CPUINFO", path)
    assert precision.cpu_vendor() == vendor
    assert "avx512f" in precision.cpu_flags() and "bugs" not in precision.cpu_flags()
    found = precision.bf16_units("cpu")
    assert found.flags == units and found.native is native
    assert precision.resolve_precision("auto", "cpu") == ("bf16" if native else "fp32")


def test_no_cpuinfo_means_no_vendor_and_no_units(tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "CPUINFO", tmp_path / "absent")
    assert precision.cpu_vendor() == "" and precision.cpu_flags() == set()
    assert precision.bf16_units("cpu").flags == ()
    assert precision.resolve_precision("auto", "cpu") == "fp32"
