"""The sampler's key/value cache: preallocated, written in place, kept at the attention's dtype.

transformers' ``DynamicCache`` concatenates each decode step's key and value to the whole
cache (a copy of the cache per step and layer), and under bf16 autocast it keeps the keys
in fp32 (the rotary embedding's output), so each decode step's attention casts the whole
cache to bf16 again. Here each layer keeps its keys and values in buffers with room for
more positions, and a step writes its one position in place. Under autocast the buffers
hold the autocast dtype: the single-query attention of a decode step runs in it anyway
(autocast casts sdpa's inputs), so storing the cast values changes nothing it computes
and spares the per-step cast. Without autocast the buffers keep the incoming dtype and
values, and fp32 sampling computes what it did with ``DynamicCache``.

The prompt's own attention (the first write) sees its keys and values as computed, not
the stored copy, as with ``DynamicCache``. Rows that leave the batch are dropped by one
index_select of the filled positions into fresh buffers (``reorder_cache``); ``crop``
forgets the positions after a given one. A pass may also run the batch's rows in parts,
each part writing its own rows (``split_rows``, ``join_rows``).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn
from transformers import DynamicCache
from transformers.cache_utils import CacheLayerMixin, DynamicLayer

from maspo.logprobs import new_cache

MIN_ROOM = 64
"""Positions a layer's buffers first leave free after the prompt (fewer when ``max_length``
comes sooner); when they are full, the buffers double."""


class PreallocatedLayer(CacheLayerMixin):
    """One attention layer's keys and values, (b, heads, capacity, d) buffers of which the
    first ``length`` positions are filled."""

    is_compileable = False
    is_sliding = False

    def __init__(self, dtype: torch.dtype | None, max_length: int) -> None:
        super().__init__()
        self.store_dtype = dtype  # None: the dtype the keys arrive in
        self.max_length = max_length  # the longest sequence expected (the buffers' size)
        self.length = 0

    def lazy_initialization(self, key_states: Tensor, value_states: Tensor) -> None:
        self.dtype = self.store_dtype or key_states.dtype
        self.device = key_states.device
        self.is_initialized = True

    def update(self, key_states: Tensor, value_states: Tensor, *args: Any,
               **kwargs: Any) -> tuple[Tensor, Tensor]:
        """Write ``key_states`` / ``value_states`` (b, heads, q, d) after the filled
        positions; return the keys and values to attend to."""
        first = not self.is_initialized
        if first:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        self._reserve(key_states, value_states, end)
        self.keys[:, :, self.length:end] = key_states
        self.values[:, :, self.length:end] = value_states
        self.length = end
        if first:  # the prompt attends to its keys and values as computed
            return key_states, value_states
        return self.keys[:, :, :end], self.values[:, :, :end]

    def _reserve(self, key_states: Tensor, value_states: Tensor, end: int) -> None:
        """Buffers with room for ``end`` positions (allocated or grown, filled part kept)."""
        capacity = 0 if self.keys is None else self.keys.shape[2]
        if end <= capacity:
            return
        room = max(end, min(self.max_length, end + MIN_ROOM), 2 * capacity)
        self.keys = self._moved(self.keys, key_states, room)
        self.values = self._moved(self.values, value_states, room)

    def _moved(self, old: Tensor | None, new: Tensor, capacity: int,
               rows: Tensor | None = None) -> Tensor:
        """A (rows, heads, capacity, d) buffer holding ``old``'s filled positions (of the
        given rows, all by default)."""
        batch = new.shape[0] if rows is None else len(rows)
        buffer = torch.empty(batch, new.shape[1], capacity, new.shape[3], dtype=self.dtype,
                             device=self.device)
        if old is not None and self.length:
            filled = old[:, :, :self.length]
            if rows is None:
                buffer[:, :, :self.length] = filled
            else:
                torch.index_select(filled, 0, rows, out=buffer[:, :, :self.length])
        return buffer

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Keep the rows ``beam_idx`` (b',), in that order (a row may repeat)."""
        if self.keys is None:
            return
        rows = beam_idx.to(self.device)
        capacity = self.keys.shape[2]
        self.keys = self._moved(self.keys, self.keys, capacity, rows)
        self.values = self._moved(self.values, self.values, capacity, rows)

    def rows(self, first: int, end: int) -> PreallocatedLayer:
        """A layer of rows ``first`` .. ``end - 1`` of this one, holding their filled
        positions (views of these buffers, not copies); what it is given next it keeps
        until ``join``."""
        part = PreallocatedLayer(self.store_dtype, self.max_length)
        if self.is_initialized:
            part.dtype, part.device, part.is_initialized = self.dtype, self.device, True
            part.keys, part.values = self.keys[first:end], self.values[first:end]
            part.length = self.length
        return part

    def join(self, parts: list[PreallocatedLayer]) -> None:
        """Take the rows of ``parts`` (made by ``rows``, in row order, each given the same
        positions since) as this layer's, with their filled positions."""
        self.dtype, self.device, self.is_initialized = parts[0].dtype, parts[0].device, True
        self.keys = torch.cat([part.keys for part in parts])
        self.values = torch.cat([part.values for part in parts])
        self.length = parts[0].length

    def crop(self, max_length: int) -> None:
        """Keep the first ``max_length`` positions (the later ones are written over)."""
        if max_length < 0:
            raise ValueError(f"cannot crop a sampling cache to {max_length} positions")
        self.length = min(self.length, max_length)

    def reset(self) -> None:
        self.keys = self.values = None
        self.length = 0
        self.is_initialized = False

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.length + query_length, 0

    def get_seq_length(self) -> int:
        return self.length

    def get_max_cache_shape(self) -> int:
        return -1  # it grows as needed


def sampling_cache(model: nn.Module, decoder: nn.Module,
                   max_length: int) -> tuple[DynamicCache, dict[str, Any]]:
    """A key/value cache for sampling with ``decoder`` (and the keyword that passes it):
    transformers' ``DynamicCache`` for ``model``'s config, whose full-attention layers are
    ``PreallocatedLayer``s sized for ``max_length`` positions and kept in the autocast
    dtype when autocast is on (layers of other kinds, e.g. sliding-window, stay
    transformers' own)."""
    cache, cache_arg = new_cache(model, decoder)
    device_type = next(decoder.parameters()).device.type
    dtype = (torch.get_autocast_dtype(device_type)
             if torch.is_autocast_enabled(device_type) else None)
    cache.layers = [PreallocatedLayer(dtype, max_length) if type(layer) is DynamicLayer
                    else layer for layer in cache.layers]
    return cache, cache_arg


def split_rows(cache: DynamicCache, bounds: list[tuple[int, int]]) -> list[DynamicCache] | None:
    """One cache per row range [a, b) of ``bounds`` (in order, covering the batch), holding
    those rows of ``cache`` (``PreallocatedLayer.rows``), for calls that each run some of
    the rows; ``join_rows`` puts them back together. None unless every layer of ``cache``
    is a ``PreallocatedLayer`` (another kind stays whole)."""
    if not all(type(layer) is PreallocatedLayer for layer in cache.layers):
        return None
    parts = []
    for first, end in bounds:
        part = copy.copy(cache)  # the same cache settings, its own list of layers
        part.layers = [layer.rows(first, end) for layer in cache.layers]
        parts.append(part)
    return parts


def join_rows(cache: DynamicCache, parts: list[DynamicCache]) -> None:
    """Make ``cache`` hold the rows of ``parts`` (from ``split_rows``), each layer's in order."""
    for i, layer in enumerate(cache.layers):
        layer.join([part.layers[i] for part in parts])
