"""Public GB/T 26875.3 frames quoted from an implementation nobody here wrote."""

from __future__ import annotations

# The public 78-byte upload frame (shootingfans/codec_gb26875_3_2011, codec/codec_test.go,
# case "test success"), as quoted in shared/research/protocols.md §1.8 (a).
PUBLIC = bytes.fromhex(
    "40 40 00 00 01 01 18 0d 11 16 0a 14 00 00 00 00 00 00 06 05 04 03 02 01 30 00 02"
    "02 01 01 03 00 d9 00 06 00 02 00 a3 c1 c7 f8 a3 b1 b2 e3 df c8 b2 b8 d7 df c0 c8"
    "00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 30 12 13 01 08 14 68 23 23")


# §1.8 (b): its confirm, built by the rule of the public example server.
PUBLIC_CONFIRM = bytes.fromhex(
    "40 40 00 00 01 01 18 0d 11 16 0a 14 06 05 04 03 02 01 00 00 00 00 00 00 00 00 03 84 23 23")

