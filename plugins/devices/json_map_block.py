"""The ``json_map`` model's compact path: one :class:`hub.blocks.ReadingBlock` per message.

:meth:`JsonMapModel.decode` builds a :class:`hub.model.Reading` per value; for the common
message (one JSON object, values at top-level keys taken as sent, no alarm or fault field
present) :class:`BlockDecoder` reads the values straight into a block whose keys were made
once per model (and per set of points present). Anything else goes to ``decode``, whose
results and errors stay the model's behaviour: the block holds what ``decode`` would give.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter
from typing import TYPE_CHECKING

import orjson

from hub.blocks import BlockKeys, ReadingBlock
from hub.model import Record

if TYPE_CHECKING:
    from plugins.devices.json_map import JsonMapModel

__all__ = ["BlockDecoder"]

#: partial key sets kept per model (a vendor's partial messages come in a few shapes)
MAX_PARTIAL_KEYS = 1024


def _top(path: tuple) -> str | None:
    return path[0] if len(path) == 1 and isinstance(path[0], str) else None


class BlockDecoder:
    """What :meth:`JsonMapModel.decode_block` needs of its model, worked out once."""

    def __init__(self, model: JsonMapModel) -> None:
        from plugins.devices.json_map import _MISSING, _lookup

        self.model = model
        self._missing, self._lookup = _MISSING, _lookup
        opts = model.options
        points = model._points  # (spec, top-level key or None, taken as sent)
        fast = bool(points) and all(key is not None and plain for _, key, plain in points)
        self.keys = tuple(key for _, key, _ in points) if fast else None
        self.max_payload = opts.max_payload
        if self.keys is not None:
            # a list of the values of every point, all at once (KeyError if one is absent)
            self._values = itemgetter(*self.keys)
            self._single = len(self.keys) == 1  # then itemgetter gives the value, not a tuple
        self.all = BlockKeys([(p.quantity, p.channel) for p in opts.points])
        self.partial: dict[tuple[int, ...], BlockKeys] = {}
        spec = opts.timestamp
        self.ts_key = (_top(spec.path) if spec is not None
                       and spec.format in ("epoch_s", "epoch_ms") else None)
        self.ts_divisor = 1000.0 if spec is not None and spec.format == "epoch_ms" else 1.0
        self.flag_keys = tuple(k for k in (_top(f.path) for f in opts.flags) if k is not None)
        self.flag_paths = tuple(f.path for f in opts.flags if _top(f.path) is None)

    def decode(self, device: str, payload: bytes, received_at: float) -> Sequence[Record]:
        model = self.model
        if self.keys is None or len(payload) > self.max_payload:
            return model.decode(device, payload, received_at)
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return model.decode(device, payload, received_at)
        if type(doc) is not dict:
            return model.decode(device, payload, received_at)
        if self.flag_keys or self.flag_paths:
            for key in self.flag_keys:
                if key in doc:
                    return model.decode(device, payload, received_at)
            for path in self.flag_paths:
                if self._lookup(doc, path) is not self._missing:
                    return model.decode(device, payload, received_at)
        block_keys = self.all
        try:  # every point present: the values in one C call
            got = self._values(doc)
            values = [got] if self._single else list(got)
        except KeyError:  # a partial message: the keys of the points present
            get = doc.get
            values = [get(k) for k in self.keys]
        for v in values:
            if type(v) is not float and v is not None:
                values = _floats(values)  # integers; strings, bools... go the general way
                if values is None:
                    return model.decode(device, payload, received_at)
                break
        if None in values:
            present = tuple(i for i, v in enumerate(values) if v is not None)
            if not present:
                return model.decode(device, payload, received_at)
            found = self.partial.get(present)
            if found is None:
                found = BlockKeys([self.all.pairs[i] for i in present])
                if len(self.partial) < MAX_PARTIAL_KEYS:
                    self.partial[present] = found
            block_keys = found
            values = [values[i] for i in present]
        total = sum(values)
        if total - total != 0.0:  # an infinite value (or a sum past the largest float)
            return model.decode(device, payload, received_at)
        raw = doc.get(self.ts_key) if self.ts_key is not None else None
        if (type(raw) is int or type(raw) is float) and -1e300 < raw < 1e300:
            ts = float(raw) / self.ts_divisor  # what _time gives an epoch time
        else:  # elsewhere, another format, or out of range (fails as decode fails)
            ts = model._time(doc, received_at, payload)
        return ReadingBlock(device, ts, block_keys, values, True)  # floats, all finite

def _floats(values: list) -> list | None:
    """``values`` with integers as floats (as :meth:`JsonMapModel.decode` takes them);
    ``None`` if one is something else, or an integer no float can hold."""
    out = []
    for v in values:
        t = type(v)
        if t is int:
            try:
                v = float(v)
            except OverflowError:
                return None
        elif t is not float and v is not None:
            return None
        out.append(v)
    return out
