"""FIND-Bench statistics, the columns of the paper's Table 2."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from findvl.data.readers.dataset import DatasetPaths
from findvl.data.readers.findbench import read_entity
from findvl.jsonio import get_int, get_list, load_json


@dataclass(frozen=True)
class EntityStats:
    """Counts for one entity file.

    Attributes:
        name: the file name.
        images: images with at least one entity caption.
        captions: entity captions.
        entities: entity phrases.
        mask: phrases whose segment is in the panoptic annotation (mask association).
        phrase: phrases with non-empty text (phrase association).
        visual: phrases with a visual reference (visual association).
    """

    name: str
    images: int
    captions: int
    entities: int
    mask: int
    phrase: int
    visual: int

    def as_dict(self) -> dict[str, int | str]:
        return asdict(self)


def _panoptic_segments(path: Path) -> dict[int, set[int]]:
    data = load_json(path)
    out: dict[int, set[int]] = {}
    for i, record in enumerate(get_list(data, "annotations", f"{path}")):
        where = f"{path}: annotations[{i}]"
        segments = get_list(record, "segments_info", where)
        out[get_int(record, "image_id", where)] = {
            get_int(s, "id", f"{where}.segments_info[{j}]") for j, s in enumerate(segments)
        }
    return out


def entity_stats(root: str | Path, split: str) -> list[EntityStats]:
    """Statistics of ``entity_{split}.json`` and ``entity_{split}_long.json`` (those present).

    Raises:
        FileNotFoundError: neither entity file exists.
    """
    paths = DatasetPaths.standard(root, split)
    files = [p for p in (paths.entity_json, paths.entity_long_json) if p is not None]
    if not files:
        raise FileNotFoundError(f"{Path(root) / 'annotations'}: no entity_{split}*.json")
    segments = _panoptic_segments(paths.panoptic_json) if paths.panoptic_json.is_file() else {}
    out = []
    for path in files:
        captions = read_entity(path).captions
        spans = [(c.image_id, s) for c in captions for s in c.spans]
        out.append(
            EntityStats(
                name=path.name,
                images=len({c.image_id for c in captions}),
                captions=len(captions),
                entities=len(spans),
                mask=sum(s.segment_id in segments.get(i, ()) for i, s in spans),
                phrase=sum(bool(s.phrase.strip()) for _, s in spans),
                visual=sum(s.reference is not None for _, s in spans),
            )
        )
    return out
