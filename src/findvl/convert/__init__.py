"""Released FIND checkpoints -> findvl runs (key tables, ignore list, strict loading)."""

from findvl.convert.official import (
    Conversion,
    convert_state_dict,
    read_official_checkpoint,
    resolve_config,
)

__all__ = ["Conversion", "convert_state_dict", "read_official_checkpoint", "resolve_config"]
