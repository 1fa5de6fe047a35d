"""Network architectures. One file per family; shared pieces in :mod:`layers`.

Each family module exposes the same small surface (see :class:`layers.ArchInfo`):
``INFO``, a frozen config dataclass per family with ``variant`` and ``scale``,
``config(variant, scale)``, ``detect(state_dict) -> config | None``, ``build(config)``
and ``estimate_memory(config, h, w, dtype_bytes)``. Nothing here knows of files,
downloads, tiles or devices.
"""
